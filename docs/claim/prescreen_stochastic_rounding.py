"""A pre-screen, not a kit strategy: stochastic rounding of conv/linear inputs to 4 or 2 bits per group of 64.

    DROPIT_DATA=... python docs/claim/prescreen_stochastic_rounding.py   # about 15 minutes alone on two cores

Each element is rounded up or down to the group's grid with the probability
that makes its expectation the input (floor(x / scale + u), u a hashed draw of
dropit.kernels.reference's), so the weight gradient is unbiased like the
"unbiased" strategy's, but every element is kept at low precision instead of a
few at full precision. It is emulated here, for the mechanism only, as a
strategy registered at run time that keeps every element and stores its
dequantized value: the gradient statistics are those of the real thing, the
memory is not (a real record of n fp32 elements would hold n/2 bytes of int4
codes or n/4 of int2, plus 4 bytes of scale per 64 elements: 0.56 n and 0.31 n
bytes, against 0.53 n for "mink" at gamma 0.9: values and a bitmask). Writes docs/claim/prescreen_stochastic_rounding.json
(rows as dropit.lab.claim.mechanism writes them) at steps 50 and 400 of the cnn
protocol's plain run, beside mink 0.9 and unbiased 0.912 on the same weights.
"""
import torch

import dropit.strategies as S
from dropit.draws import current_key
from dropit.kernels import reference



def sround(bits, group=64):
    levels = 2 ** (bits - 1) - 1  # symmetric: int4 -> +-7, int2 -> +-1

    def select(x, gamma):
        return S.Selection(mask=torch.ones(x.numel(), dtype=torch.bool))

    def finish(values, flat, sel):
        n = flat.numel()
        v = torch.cat([flat.float(), flat.new_zeros((-n) % group).float()]).view(-1, group)
        scale = v.abs().amax(1, keepdim=True) / levels
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        i = torch.arange(v.numel()).view_as(v)
        u = (reference._mix31(reference._mix31((i ^ current_key()) & 0x7FFFFFFF) ^ 12345) >> 7).float() / 2**24
        q = torch.floor(v / scale + u).clamp(-levels, levels)
        return (q * scale).reshape(-1)[:n].to(values.dtype)
    return S.Strategy(f"sround{bits}", select, lambda n, g: n, finish, draws=True)


S.STRATEGIES["sround4"], S.STRATEGIES["sround2"] = sround(4), sround(2)  # before the lab reads the table
from dropit.lab.claim import mechanism as M  # noqa: E402
from dropit.lab.claim.protocols import run_config  # noqa: E402
from dropit.lab.io import write_json  # noqa: E402
cfg = run_config("cnn", "plain", seed=0, out_dir=__file__.replace(".py", "-work"))
rows = M.probe_run(cfg, at_steps=[50, 400], arms=[("mink", 0.9), ("unbiased", 0.912), ("sround4", 0.5), ("sround2", 0.5)])
write_json(__file__.replace(".py", ".json"), rows)
for r in rows:
    print(f"step {r['step']} {r['strategy']} {r['gamma']}: bias {100 * r['bias_rel']:.1f}% of |g| "
          f"(se {100 * r['bias_se'] / r['exact_norm']:.1f}%), noise {r['noise_dropit'] / r['noise_plain']:.2f}x plain's, "
          f"distance {r['mse_dropit'] / r['mse_plain']:.2f}x")
