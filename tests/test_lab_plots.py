"""Plotly figure builders: the figures show what the data says."""
import numpy as np
import torch

from dropit.lab import plots
from dropit.lab.notebook import teach

MiB = 2**20


def test_heatmap_after_has_zeros_exactly_where_dropped():
    x = teach.demo_activation(batch=2, channels=4, size=16)
    d = teach.drop(x, 0.8, "mink")
    fig = plots.activation_heatmap(d.before, d.after, index=(1, 2))
    before, after = (np.array(t.z) for t in fig.data)
    np.testing.assert_array_equal(before, x[1, 2].numpy())
    kept = d.kept[1, 2].numpy()
    assert (after[~kept] == 0).all()
    np.testing.assert_array_equal(after[kept], x[1, 2].numpy()[kept])
    assert fig.data[0].zmin == fig.data[1].zmin == -fig.data[0].zmax  # one shared symmetric scale


def test_histogram_counts_every_element_once_and_marks_the_threshold():
    x = teach.demo_activation(batch=1, channels=4, size=16)
    d = teach.drop(x, 0.6, "mink")
    fig = plots.magnitude_histogram(x, d.threshold, d.kept, bins=40)
    dropped, kept = fig.data
    assert sum(dropped.y) == (~d.kept).sum().item() and sum(kept.y) == d.kept.sum().item()
    assert fig.layout.shapes[0].x0 == d.threshold
    assert len(plots.magnitude_histogram(x).data) == 1 and not plots.magnitude_histogram(x).layout.shapes


def test_gamma_curves_one_line_per_strategy():
    x = teach.demo_activation(batch=1, channels=4, size=8)
    layer = torch.nn.Conv2d(4, 4, 3)
    grads = teach.grad_error_vs_gamma(layer, x, [0, 0.5], "mink") + teach.grad_error_vs_gamma(layer, x, [0, 0.5], "random")
    fig = plots.gamma_curves(grads, teach.kept_bytes_vs_gamma(x, [0, 0.5]))
    names = [t.name for t in fig.data]
    assert names[:2] == ["grad error (mink)", "grad error (random)"] and len(names) == 4
    assert list(fig.data[2].y) == [r["ratio"] for r in teach.kept_bytes_vs_gamma(x, [0, 0.5])]


def test_layer_memory_bars_in_mib_and_top():
    rows = [{"name": "a", "kind": "Conv2d", "bytes": 2 * MiB, "dense_bytes": 0},
            {"name": "b", "kind": "Linear", "bytes": 5 * MiB, "dense_bytes": 20 * MiB},
            {"name": "", "kind": "Net", "bytes": MiB, "dense_bytes": 0}]
    fig = plots.layer_memory_bars(rows)
    assert fig.data[0].orientation == "h" and fig.layout.yaxis.autorange == "reversed"  # first layer on top
    assert list(fig.data[0].y) == ["a", "b", "<root>"] and list(fig.data[0].x) == [2, 5, 1]
    assert list(fig.data[1].x) == [0, 20, 0]  # the dense size DropIT replaced
    top = plots.layer_memory_bars({"plain": rows, "dropit": rows[:1]}, top=2)
    assert list(top.data[0].y) == ["b", "a"] and [t.name for t in top.data if t.type == "bar"] == ["plain", "dropit"]


def test_layer_names_shortened_and_the_figure_sized_by_the_layers():
    assert plots.short_layer_name("encoder.layers.encoder_layer_11.self_attention") == "block 11.attn"
    assert plots.short_layer_name("blocks.3.mlp.fc1") == "block 3.mlp.fc1"
    assert plots.short_layer_name("layer1.0.conv1") == "layer1.0.conv1"  # short names stay
    long = plots.short_layer_name("features.denseblock4.denselayer16.norm2.something_long")
    assert len(long) == plots.SHORT_NAME_CHARS and long.startswith("…") and long.endswith("something_long")
    # a ViT-B/16's 75 rows: short labels, the full names in the hover, at least 14 px a bar
    names = ["conv_proj"] + [f"encoder.layers.encoder_layer_{i}.{m}" for i in range(12)
                             for m in ("ln_1", "self_attention", "ln_2", "mlp.0", "mlp.1", "mlp.3")] + ["encoder.ln", "heads.head"]
    rows = [{"name": n, "kind": "Linear", "bytes": MiB, "dense_bytes": 0} for n in names]
    fig = plots.layer_memory_bars({"plain": rows, "DropIT": rows})
    labels = list(fig.data[0].y)
    assert len(set(labels)) == len(names) and max(map(len, labels)) <= plots.SHORT_NAME_CHARS
    assert "block 11.mlp.3" in labels and fig.data[0].hovertext[-3] == "encoder.layers.encoder_layer_11.mlp.3 (Linear)"
    assert fig.layout.height >= 14 * 2 * len(names)  # 14 px or more a bar
    assert plots.layer_memory_bars(rows[:5]).layout.height < 400  # a short chart stays short
    dup = plots.layer_memory_bars([{"name": "x" * 40 + "a.end", "bytes": 1}, {"name": "y" * 40 + "a.end", "bytes": 1}])
    assert len(set(dup.data[0].y)) == 2  # equal shortened names kept apart


def _metrics(label, losses, top1):
    return {"config": {"label": label}, "epochs": [
        {"epoch": i + 1, "train_loss": l, "val_top1": t, "cache_bytes": 3 * MiB} for i, (l, t) in enumerate(zip(losses, top1))]}


def test_training_curves_three_panels_per_run():
    fig = plots.training_curves([_metrics("a", [3, 2], [10, 20]), _metrics("b", [4, 3], [5, None])])
    assert len(fig.data) == 6
    a_loss, a_top1, a_cache, _, b_top1, _ = fig.data
    assert list(a_loss.y) == [3, 2] and list(a_top1.y) == [10, 20] and list(a_cache.y) == [3, 3]
    assert list(b_top1.x) == [1]  # epochs without evaluation are skipped
    assert a_loss.name == "a" and fig.data[3].name == "b"
    same = plots.training_curves([_metrics("quick", [3], [1]), _metrics("quick", [2], [2])])
    assert [t.name for t in same.data if t.showlegend] == ["quick", "quick (2)"]  # both runs drawn


def test_cache_column_figure_peak_only_on_cuda():
    rows = [{"table": "cifar100", "model": "ResNet-18", "dropit": False, "gamma": None, "kept_mb": 575.0, "paper_mb": 648, "peak_mb": None}]
    fig = plots.cache_column_figure(rows)
    assert [t.name.split(":")[0] for t in fig.data] == ["ours", "paper (CUDA peak)"]
    rows[0]["peak_mb"] = 700.0
    assert len(plots.cache_column_figure(rows).data) == 3


def test_heatmap_panels_fit_the_slice_without_blank_margins():
    x = teach.demo_activation(batch=1, channels=2, size=32)
    d = teach.drop(x, 0.9, "mink")
    fig = plots.activation_heatmap(d.before, d.after)
    for axis in ("xaxis", "xaxis2"):
        assert fig.layout[axis].range == (-0.5, 31.5) and fig.layout[axis].constrain == "domain"  # was −10 to 40
    assert fig.layout.yaxis.range == (31.5, -0.5) and fig.layout.yaxis.constrain == "domain"  # row 0 on top


def test_gamma_curves_keep_a_strategy_visible_under_another():
    x = teach.demo_activation(batch=1, channels=4, size=8)
    layer = torch.nn.Conv2d(4, 4, 3)
    grads = [r for s in ("mink", "sampled") for r in teach.grad_error_vs_gamma(layer, x, [0, 0.5, 0.9], s)]
    mink, sampled = plots.gamma_curves(grads).data
    assert mink.line.width > sampled.line.width and mink.line.dash != sampled.line.dash
    assert mink.marker.size > sampled.marker.size and mink.marker.symbol != sampled.marker.symbol
