"""Draw docs/dropit.svg: one real activation map before and after DropIT's min-k drop.

    python docs/make_figure.py

The activation is a 16x16 crop of one channel of a CIFAR ResNet-18's first
block input (after its ReLU) for a real CIFAR-100 test image when DROPIT_DATA
points at the data, else a random image. Cells are shaded by |x|; dropped cells
are blank. Pure SVG, no plotting library.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import dropit  # noqa: E402

CELL, GAP, N = 14, 40, 16


def activation() -> torch.Tensor:
    from dropit.lab.models.catalog import build_model

    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32)
    root = os.environ.get("DROPIT_DATA")
    if root and (Path(root) / "cifar-100-python").is_dir():
        from dropit.lab.data.datasets import read_cifar100

        images, _ = read_cifar100(Path(root) / "cifar-100-python", "test")
        image = torch.as_tensor(images[:1]).float() / 255
    model = build_model("resnet18_cifar", 100).eval()  # the catalog's CIFAR ResNet-18
    with torch.no_grad():
        x = model.relu(model.bn1(model.conv1(image)))
    return x[0, 5, 8 : 8 + N, 8 : 8 + N]


def grid(x: torch.Tensor, keep: torch.Tensor, left: int, title: str) -> list[str]:
    top = x.abs().max()
    out = [f'<text x="{left + N * CELL / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>']
    for i in range(N):
        for j in range(N):
            shade = 255 - int(200 * float(x[i, j].abs() / top)) if keep[i, j] else 255
            fill = f"rgb({shade},{shade},255)" if keep[i, j] else "white"
            out.append(f'<rect x="{left + j * CELL}" y="{28 + i * CELL}" width="{CELL}" height="{CELL}" '
                       f'fill="{fill}" stroke="#ccc" stroke-width="0.5"/>')
    return out


def main() -> None:
    x = activation()
    keep = dropit.STRATEGIES["mink"](x.reshape(-1), 0.9).view_as(x)
    width = 2 * N * CELL + GAP
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{N * CELL + 60}" font-family="sans-serif">']
    parts += grid(x, torch.ones_like(keep), 0, "input cached by plain autograd")
    parts += grid(x, keep, N * CELL + GAP, "DropIT, gamma = 0.9: 10% kept")
    parts.append(f'<text x="{width / 2}" y="{N * CELL + 52}" text-anchor="middle" font-size="11" fill="#555">'
                 f'one channel of a ResNet-18 activation; darker = larger |x|; blank = dropped</text>')
    parts.append("</svg>")
    (ROOT / "docs" / "dropit.svg").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
