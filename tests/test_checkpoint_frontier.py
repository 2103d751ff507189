"""dropit.checkpoint_blocks with DropIT, and the frontier benchmark on a small model."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import dropit
from dropit.lab.measure import frontier
from dropit.lab.models.catalog import build_model

ROOT = Path(__file__).resolve().parents[1]


def _step(model, x):
    model.zero_grad()
    out = model(x)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_checkpointed_blocks_give_plain_gradients_and_running_stats():
    torch.manual_seed(0)
    plain = build_model("resnet_mini", 10).train()
    ckpt = dropit.checkpoint_blocks(copy.deepcopy(plain), frontier.blocks_of(plain))
    x = torch.randn(4, 3, 16, 16)
    for _ in range(2):
        out_p, g_p = _step(plain, x)
        out_c, g_c = _step(ckpt, x)
    torch.testing.assert_close(out_c, out_p, rtol=0, atol=0)
    for n in g_p:
        torch.testing.assert_close(g_c[n], g_p[n], msg=n)
    for (n, a), (_, b) in zip(plain.named_buffers(), ckpt.named_buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=n)  # updated once per step, not twice



@pytest.mark.slow
def test_compiled_checkpointed_blocks_give_plain_gradients_and_running_stats():
    """Under torch.compile (fullgraph) the blocks recompute inside the graph; BatchNorm still updates once a step."""
    torch.manual_seed(0)
    plain = build_model("resnet_mini", 10).train()
    model = dropit.checkpoint_blocks(copy.deepcopy(plain), frontier.blocks_of(plain))
    ckpt = dropit.compile_budgeted(model, fullgraph=True, channels_last=False)
    x = torch.randn(4, 3, 16, 16)
    for _ in range(2):
        out_p, g_p = _step(plain, x)
        model.zero_grad()
        out_c = ckpt(x)
        out_c.backward(torch.linspace(-1, 1, out_c.numel()).view_as(out_c))
    torch.testing.assert_close(out_c.detach(), out_p, rtol=1e-4, atol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, g_p[n], rtol=1e-3, atol=1e-5, msg=n)
    for (n, a), (_, b) in zip(plain.named_buffers(), model.named_buffers()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=n)  # updated once per step, not twice

def test_dropit_skips_checkpointed_blocks_and_restore_undoes_both():
    model = build_model("resnet_mini", 10)
    blocks = frontier.blocks_of(model)
    dropit.checkpoint_blocks(model, blocks[::2])
    dropit.to_dropit(model, quantize="int8")
    converted = [name for name, _, _ in dropit.converted_modules(model)]
    assert converted and not any(name.startswith(blocks[0] + ".") for name in converted)
    assert any(name.startswith(blocks[1] + ".") for name in converted)
    assert [n for n, _ in dropit.checkpointed_modules(model)] == blocks[::2]
    dropit.restore(model)
    assert not list(dropit.converted_modules(model)) and not list(dropit.checkpointed_modules(model))


def test_checkpoint_blocks_rejects_bad_names_before_changing_anything():
    model = build_model("resnet_mini", 10)
    with pytest.raises(ValueError, match="no submodule"):
        dropit.checkpoint_blocks(model, ["layer1.0", "layer9"])
    assert not list(dropit.checkpointed_modules(model))
    dropit.checkpoint_blocks(model, ["layer1.0"])
    with pytest.raises(ValueError, match="already"):
        dropit.checkpoint_blocks(model, ["layer1.0"])


@pytest.mark.slow
def test_frontier_script_on_a_small_model(tmp_path):
    out = tmp_path / "frontier.json"
    configs = "plain,checkpoint every other block + DropIT + int8"  # DropIT, int8 and checkpointing at once
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "frontier.py"), "--models", "tiny", "--rounds", "1",
                    "--configs", configs, "--json", str(out)], check=True, env=env, capture_output=True, text=True)
    rows = json.loads(out.read_text())
    assert [r["config"] for r in rows] == configs.split(",")
    by = {r["config"]: r for r in rows}
    assert by["plain"]["kept_ratio"] == 1.0 and by["plain"]["time_ratio"] == 1.0
    assert by["checkpoint every other block + DropIT + int8"]["kept_ratio"] < 0.5  # measured 0.24
    assert by["checkpoint every other block + DropIT + int8"]["forward_ops"] > by["plain"]["forward_ops"]  # recomputed
    for r in rows:
        assert r["kept_bytes"] > 0 and r["peak_bytes"] >= r["kept_bytes"] * 0.5 and r["time_ratio"] > 0
        assert r["baseline"] == "plain" and not r["compiled"] and r["budget"] is None
    assert "| forward convs+matmuls per step |" in frontier.markdown(rows)


@pytest.mark.slow
def test_frontier_rows_are_eager_by_default_and_unknown_names_are_refused():
    assert frontier.EAGER == [c for c in frontier.CONFIGS if not c.startswith("compiled ")]
    assert frontier.with_baselines(["DropIT"]) == ["plain", "DropIT"]
    assert "--compiled" in subprocess.run([sys.executable, str(ROOT / "benchmarks" / "frontier.py"), "--help"],
                                          check=True, capture_output=True, text=True).stdout
    with pytest.raises(ValueError, match="unknown frontier configurations"):
        frontier.run(["tiny"], configs=["DropIT, compiled"])


def test_memory_rows_resume_from_their_file_and_are_saved_one_by_one(tmp_path, monkeypatch):
    measured = []

    def fake_row(model_key, config):
        measured.append((model_key, config))
        if len(measured) == 3:
            raise KeyboardInterrupt  # stopped while measuring the third row
        return {"model": model_key, "config": config, "kept_bytes": 100 * len(measured), "peak_bytes": 1,
                "forward_ops": 1}

    monkeypatch.setattr(frontier, "memory_row", fake_row)
    path = tmp_path / "memory.json"
    configs = frontier.with_baselines(["DropIT", "DropIT + int8"])
    with pytest.raises(KeyboardInterrupt):
        frontier.memory_rows(["tiny"], configs, path, log=None)
    assert [r["config"] for r in json.loads(path.read_text())] == ["plain", "DropIT"]  # the two finished rows
    rows = frontier.memory_rows(["tiny"], configs, path, log=None)
    assert measured == [("tiny", "plain"), ("tiny", "DropIT"), ("tiny", "DropIT + int8"), ("tiny", "DropIT + int8")]
    assert rows[("tiny", "DropIT")]["kept_bytes"] == 200 and len(json.loads(path.read_text())) == 3


def test_load_or_run_reads_a_benchmark_list_and_the_committed_wrapper(tmp_path):
    rows = [{"model": "tiny", "config": "plain"}]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    (tmp_path / "wrapped.json").write_text(json.dumps({"source": "measured", "rows": rows}))
    assert frontier.load_or_run(tmp_path / "list.json", "tiny") == rows
    assert frontier.load_or_run(tmp_path / "wrapped.json", "tiny") == rows
    committed = frontier.load_or_run(ROOT / "docs" / "data" / "frontier.json", "tiny")
    assert {r["config"] for r in committed} >= {"compiled plain", "compiled budget 0.2", "compiled DropIT + int8"}
