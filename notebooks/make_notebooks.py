"""Write the kit's notebooks (without outputs) from the cell sources below.

    python notebooks/make_notebooks.py          # rewrites notebooks/*.ipynb

Every notebook has one cell tagged ``parameters`` (papermill injects its
values after it) and thin cells that call ``dropit`` and ``dropit.lab``.
Interactive-only cells are governed by ``interactive`` (papermill passes False).
Edit here, rerun, and commit the regenerated notebooks.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNEL = {"name": "dropit", "display_name": "Python (dropit)", "language": "python"}
CITE = (
    "Joya Chen, Kai Xu, Yuhui Wang, Yifei Cheng, Angela Yao. *DropIT: Dropping Intermediate Tensors "
    "for Memory-Efficient DNN Training.* ICLR 2023 ([arXiv 2202.13808](https://arxiv.org/abs/2202.13808))."
)


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str, *tags: str):
    cell = new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(text: str):
    return code(text, "parameters")


QUICKSTART = [
    md(f"""
# DropIT in five minutes

A convolution or linear layer keeps its input until backward, because the weight
gradient needs it. DropIT keeps only the input's largest-magnitude elements: with
dropping rate γ the smallest γ·n elements by |x| are dropped, the rest are stored
compactly and scattered back into zeros in backward. The layer's output and its
input gradient stay exact; only the weight gradient is approximated.

{CITE}
"""),
    params("""
interactive = True     # widgets below; papermill passes False (static figures only)
gamma = 0.9            # dropping rate shown in the static figures
strategy = "mink"      # "mink" (the paper's exact min-k), "sampled" or "random"
gammas = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
strategies = ["mink", "sampled", "random"]
resnet_model = "resnet18_cifar"   # per-layer memory: a ResNet ...
resnet_gamma = 0.8
vit_model = "vit_b_16"            # ... and a ViT
vit_gamma = 0.9
memory_batch = 2
top_layers = 25
mechanism_json = "docs/claim/mechanism.json"  # the claim study's gradient measurement; "" to skip
"""),
    code("""
import torch
from dropit.lab import plots
from dropit.lab.notebook import teach
"""),
    md("""
## What DropIT does to one activation tensor

A reproducible activation (smoothed noise through a random convolution). Left: what
a plain layer caches for backward. Right: what a DropIT layer caches, expanded back
to the dense shape: the dropped elements are zeros (white).
"""),
    code("""
x = teach.demo_activation()                       # (4, 16, 32, 32)
d = teach.drop(x, gamma, strategy)
print(f"kept {d.kept_fraction:.1%} of {x.numel()} elements as {d.record.layout.kind!r}: "
      f"{d.record.nbytes()} bytes instead of {x.numel() * x.element_size()}")
plots.activation_heatmap(d.before, d.after)
"""),
    code("""
plots.magnitude_histogram(d.before, d.threshold, d.kept, title=f"|x| at γ = {gamma} ({strategy})")
"""),
    md("Move γ and switch the strategy: both figures redraw (needs a live kernel)."),
    code("""
if interactive:
    from dropit.lab.notebook import widgets
    display(widgets.gamma_explorer(x, gamma=gamma, strategy=strategy))
"""),
    md("""
## What γ costs and what it saves

Left: the error of the weight gradient of one 3x3 convolution against dense autograd
(the input gradient stays exact at every γ). Right: bytes kept for the cached input
relative to the dense tensor: this kit stores a bitmask (or int32 indices when very
few are kept); the published code stores one int32 index per kept value, which
breaks even only at γ = 0.5.
"""),
    code("""
layer = torch.nn.Conv2d(16, 32, 3, padding=1)
grad_rows = [r for s in strategies for r in teach.grad_error_vs_gamma(layer, x, gammas, s)]
byte_rows = teach.kept_bytes_vs_gamma(x, gammas, strategy)
assert max(r["input_rel_error"] for r in grad_rows) < 1e-5   # grad_input is exact
plots.gamma_curves(grad_rows, byte_rows)
"""),
    md("""
## Less noise, or a biased gradient?

With a dropped input the weight gradient is biased: the dropped elements contribute nothing.
The paper argues that the same dropping also removes minibatch noise, and that this is why
DropIT can match or beat plain training. The claim study measured both at a few steps of a
CIFAR-100 training run, against the exact gradient of 16 minibatches (`docs/claim.md`, "The
mechanism"), one line per step: left, DropIT's bias as a share of the exact gradient's norm;
right, DropIT's minibatch noise over plain's at the same weights (below 1: less noisy). The
caption under the title states what the lines show. Distances to the exact gradient, and how
far plain's gradient would have to be scaled down to be as near, are tabled in `docs/claim.md`.
Over its full runs, the study's DropIT arms finished with a higher training loss and a lower
top-1 than plain at every seed, on a CNN and a ViT (the claim notebook's first chart).
"""),
    code("""
from dropit.lab.claim import figures
from dropit.lab.reproduce.rows import resolve

fig = figures.mechanism_figure_of(mechanism_json and resolve(mechanism_json))
if fig is not None:
    fig.show()
else:
    print("no mechanism file:", mechanism_json or "(skipped)", "- python -m dropit.lab.claim.mechanism writes it")
"""),
    md("""
And for a whole network: the bytes a ResNet keeps for backward as γ grows (with
DropIT's 1-bit ReLU masks, so that dropping a convolution's input really frees it).
"""),
    code("""
rows = teach.model_cache_vs_gamma(resnet_model, gammas, strategy=strategy, batch_size=memory_batch)
plots.cache_vs_gamma_figure(rows, title=f"{resnet_model}, batch {memory_batch}: kept for backward vs γ")
"""),
    md("""
## Where the memory of a network goes

Bytes each layer keeps for backward in one training-mode forward (the meter counts
each storage once), plain and with DropIT (first layer and classifier left dense).
The markers show the dense size of the inputs DropIT stored compactly.
"""),
    code("""
from dropit.lab.measure.cache import per_layer_pair

layers = per_layer_pair(resnet_model, gamma=resnet_gamma, strategy=strategy, batch_size=memory_batch, device="cpu")
plots.layer_memory_bars(layers, top=top_layers, title=f"{resnet_model}, batch {memory_batch}: kept for backward per layer")
"""),
    code("""
layers = per_layer_pair(vit_model, gamma=vit_gamma, strategy=strategy, batch_size=memory_batch, device="cpu")
plots.layer_memory_bars(layers, top=top_layers, title=f"{vit_model}, batch {memory_batch}: kept for backward per layer")
"""),
]

EXPLORE = [
    md(f"""
# Explore: a lab bench for DropIT

How much memory does a dropping rate save, and what does it cost in accuracy, against
the plain model? Pick a model, a dataset, γ and a strategy and press **run**: loss,
running top-1 and the bytes each step kept for backward are drawn live while training
runs in the background, validation top-1 once per epoch. Every run stays on the figure
in its own colour, so plain and DropIT runs sit side by side, and the table below fills
in as runs finish. The fields show what a run will train (from the parameter file), and the
line under them the steps that the status line counts. **sweep** runs the plain model (the
reference, which also stands for γ 0) and then DropIT at each γ and strategy listed, and draws
what γ saves and costs (a γ listed twice, an empty list or one outside [0, 1) is refused); **stop** ends the current
run cleanly after its step (metrics.json is still written) and skips the rest of a
sweep; **clear** empties the bench. **compile** trains `torch.compile(model)`,
**channels last** changes the memory layout, **seeds** repeats each run with further
seeds. Data comes from `DROPIT_DATA` (or the `data_dir` of the parameter file).

Every top-1 carries its error: the binomial standard error of the run's test images. Only runs
of distinct seeds that finished their schedule form a mean; a rerun of a seed is shown as a
rerun (flagged if it differs) and a stopped run with its own step count, neither pooled nor
judged. Where plain and DropIT share seeds, the difference is paired by seed, and the table
names the test it used; a difference whose 95% interval holds 0 is marked *within noise at n
test images*, and a run too short to tell a working DropIT from a broken one says so. The default recipe (`params/explore.yaml`,
150 steps, 2000 test images, about 30 s a DropIT run on two idle cores) is long enough for
that; `params/smoke.yaml` (10 steps) is not. For a difference of a point or less, start from
the accuracy study's recipe, `params_file = "params/claim_cnn.yaml"` (full CIFAR-100, about
20 minutes a run on two cores; see `docs/claim.md`), and repeat with seeds.

{CITE}
"""),
    params("""
interactive = True                  # False under papermill: run (or sweep) once, then static figures and the table
params_file = "params/explore.yaml" # the base recipe the widgets start from; presets: smoke.yaml (seconds, too short
                                    # to compare), explore.yaml (minutes), claim_cnn.yaml (the accuracy study's recipe)
overrides = []                      # command-line style overrides of the recipe (see dropit.lab.train.config)
out_root = "runs/explore"
sweep_gammas = []                   # e.g. [0.5, 0.9]: the sweep's γ values; headless, a non-empty list runs the sweep
sweep_strategies = []               # the sweep's strategies; [] : the recipe's
overlay = True                      # False: each run replaces the previous one in the figure
"""),
    code("""
from dropit.lab.notebook import widgets
from dropit.lab.reproduce import rows
from dropit.lab.train import config

base = config.load_config(str(rows.resolve(params_file)), overrides)
panel = widgets.BenchPanel(base, out_root=rows.resolve_out(out_root), overlay=overlay,
                           sweep_gammas=sweep_gammas, sweep_strategies=sweep_strategies)
if interactive:
    display(panel.widget)
else:  # no front end: press "sweep" (or "run") programmatically and wait
    panel.sweep() if sweep_gammas else panel.run()  # the sweep: plain first, then DropIT at each γ
    panel.wait()
    assert panel.error is None, panel.error
"""),
    md("Headless runs (papermill): the figures as static copies and the runs table."),
    code("""
from IPython.display import Markdown
from dropit.lab import plots
from dropit.lab.notebook import bench

if not interactive:
    display(plots.go.Figure(panel.fig))
    if sweep_gammas:
        display(plots.go.Figure(panel.summary))
    display(Markdown(bench.table_markdown(panel.book.table())))
"""),
]


def table_notebook(table: str, title: str, note: str = "") -> list:
    return [
        md(f"""
# {title}: the paper's table, reproduced

Runs the rows of the {title} table from their parameter files
(`params/{table}_*_quick.yaml` with `preset = "quick"`, the paper's recipes with
`preset = "paper"`; through torchrun when several GPUs are present), then lays our
numbers beside the paper's. Each row says what actually ran. Metrics go to
`<out_root>/<row>/metrics.json`, figures to `figures_dir`.{note}

{CITE}
"""),
        params(f"""
table = "{table}"
preset = "quick"          # "quick" (CPU, minutes) or "paper" (the full recipes, GPUs)
params_files = None       # default: the table's four rows for the preset
overrides = []            # command-line style overrides for every row (see dropit.lab.train.config)
out_root = "results/runs"
figures_dir = "results/figures"
launcher = "auto"         # "auto": torchrun when several GPUs, else in this process
time_budget_s = None      # seconds for all rows together (the quick reproduction's budget), None: no limit
"""),
        code("""
from IPython.display import Markdown
from dropit.lab import plots
from dropit.lab.io import write_figure, write_json
from dropit.lab.reproduce import rows, tables

files = params_files or rows.table_params(table, preset)
metrics = rows.run_rows(files, overrides, out_root=rows.resolve_out(out_root), launcher=launcher,
                        time_budget_s=time_budget_s)
"""),
        code("""
table_rows = tables.build_table(table, metrics)
write_json(rows.resolve_out(figures_dir) / f"{table}_table.json", table_rows)
Markdown(tables.to_markdown(table_rows))
"""),
        code("""
fig = plots.training_curves(metrics, title=f"{table}: training curves ({preset})")
write_figure(rows.resolve_out(figures_dir) / f"{table}_training.plotly.json", fig)
fig
"""),
    ]


MEMORY = [
    md(f"""
# The Cache (MB) column

The paper's Cache (MB): one training-mode forward of 128 random fp32 images, for the
four models of its tables, plain and with DropIT (γ = 0.8 for ResNet-18, 0.9 for
ViT-B/16). Ours is the meter's bytes kept for backward (each storage once); without a
GPU the models run on the meta device (sizes without computing), so ViT-B/16 at batch
128 is estimated on any machine. The paper's number is the CUDA allocator's peak
(weights, input, kept tensors, transients), which we also report where CUDA is
present. No dataset needed.

{CITE}
"""),
    params("""
batch_size = 128
device = "auto"        # "auto": measure on CUDA where present, else estimate on the meta device
out_dir = "results/memory"
top_layers = 20
interactive = True     # the γ / quantize widget below; papermill passes False (static figures)
explore_models = ["resnet18_cifar", "vit_b_16"]   # at batch_size, estimated on the meta device
explore_gamma = 0.9
explore_quantize = "int8"   # None, "int8" or "int4" (lossy)
frontier_models = "tiny"    # "resnet18-cifar,vit_b_16" for the README's frontier (about 20 minutes)
frontier_rounds = 3
frontier_configs = None     # None: the eager rows, dropit.lab.measure.frontier.EAGER
frontier_json = None        # shown instead of measuring: benchmarks/frontier.py --json's file, or the committed
                            # "../docs/data/frontier.json" (ResNet-18 and ViT-B/16, eager and compiled rows)
"""),
    code("""
from IPython.display import Markdown
from dropit.lab.measure import cache as memory
from dropit.lab import plots
from dropit.lab.io import write_figure, write_json
from dropit.lab.reproduce import rows
from dropit.lab.paper import PAPER_ROWS

out, dev = rows.resolve_out(out_dir), memory.memory_device(device)
column = memory.cache_column(batch_size=batch_size, device=dev)
write_json(out / "cache_column.json", column)
Markdown(memory.markdown(column))
"""),
    code("""
fig = plots.cache_column_figure(column, title=f"Cache (MB), batch {batch_size}, fp32, one training forward")
write_figure(out / "cache_column.plotly.json", fig)
fig
"""),
    md("## Per layer: where the bytes are, plain and with DropIT (one chart per table row pair)"),
    code("""
for row in (r for r in PAPER_ROWS if r["dropit"]):
    name = f"{row['table']}_{row['model_name']}"
    layers = memory.paper_per_layer_pair(row, batch_size=batch_size, device=dev)
    write_json(out / f"per_layer_{name}.json", layers)
    fig = plots.layer_memory_bars(layers, top=top_layers, title=f"{row['model']} ({row['table']}), batch {batch_size}")
    write_figure(out / f"per_layer_{name}.plotly.json", fig)
    display(fig)
"""),
    md("""
## What DropIT leaves dense, compressed too (lossy, opt-in)

After DropIT, most of what a model keeps is other ops' saved inputs: BatchNorm's in a
ResNet; LayerNorm's, GELU's and the attention's q, k, v and output in a ViT.
`to_dropit(model, quantize="int8")` keeps those as 8-bit codes with one scale per 64
elements, `"int4"` as 4-bit codes (and GELU/SiLU as a 4-bit code of their derivative).
Forward outputs stay exact; gradients come from the quantized inputs, so these are
**approximate** (see `benchmarks/gradients.py` and `benchmarks/accuracy.py`). Move γ
and pick the level: both models redraw (meta-device estimates, needs a live kernel).
"""),
    code("""
explore = dict(gamma=explore_gamma, quantize=explore_quantize, batch_size=batch_size)
if interactive:
    from dropit.lab.notebook import widgets
    display(widgets.memory_explorer(tuple(explore_models), top=top_layers, **explore))
else:
    for name in explore_models:
        layers = memory.per_layer_pair(name, strategy="sampled", **explore)  # estimated on the meta device
        display(plots.layer_memory_bars(layers, top=top_layers, title=f"{name}, batch {batch_size}"))
"""),
    md("""
## Memory against speed: DropIT, its lossy companions and activation checkpointing

Forward-kept memory, whole-step peak and step time, each against the plain model
(`dropit.lab.measure.frontier`: each memory row a fresh process, times interleaved in one).
Checkpointing keeps only each block's input but runs the block's forward twice;
`dropit.checkpoint_blocks` combines it with DropIT on the other blocks.

**These step times are not the README's.** With `frontier_models = "tiny"` (the default) this
times two tiny models in this kernel, on whatever cores the machine has free and beside whatever
else it runs; on the development VM's two shared cores DropIT measured 1.3–1.8x plain's step time
here. The README's 1.02–1.07x are CIFAR ResNet-18 and ViT-B/16, each timed alone on an idle VM
(`benchmarks/frontier.py`); set `frontier_json = "../docs/data/frontier.json"` to show those rows,
or `frontier_models = "resnet18-cifar,vit_b_16"` to time them here (about 20 minutes).
"""),
    code("""
from dropit.lab.measure import frontier

frontier_rows = frontier.load_or_run(rows.resolve(frontier_json) if frontier_json else None,
                                     frontier_models, frontier_configs, frontier_rounds)
write_json(out / "frontier.json", frontier_rows)
display(Markdown(frontier.markdown(frontier_rows)))
fig = plots.frontier_figure(frontier_rows)
write_figure(out / "frontier.plotly.json", fig)
fig
"""),
    md("""
## A memory target, planned

`dropit.plan(model, batch, loss_fn, target=...)` measures the candidates on your model
(DropIT's γ, the quantize levels, checkpointed blocks, and with `compile=True` the
compiler's memory budget) and picks the fastest that keeps at most the target. Here on the
first of `frontier_models` at its time batch; move the target (a fraction of plain's kept
bytes) and the pick, the star, is re-chosen from the measured table.
"""),
    code("""
from dropit.lab.notebook.planner_widget import plan_figure, plan_model

name, _, _, time_batch = frontier.MODELS[frontier_models.split(",")[0]]
planned = plan_model(name, batch_size=time_batch, gammas=(0.9,), rounds=frontier_rounds)
write_json(out / "plan.json", [row.as_dict() for row in planned.rows])
if interactive:
    from dropit.lab.notebook.planner_widget import planner_explorer
    display(planner_explorer(planned, target=0.3))
else:
    display(plan_figure(planned, target=0.3))
"""),
]


ICLR_NOTE = """

The release's README adds this table: timm's DeiT-Ti trained from scratch on ImageNet-1k
with the DeiT recipe at γ = 0.5 / 0.6 / 0.7, and DeiT-S / DeiT-B fine-tuned on CIFAR-100
at γ = 0.9 (top-1 only). The quick rows train `deit_mini` (DeiT-Ti's blocks, 4 deep) on
Imagenette and CIFAR-100; the paper's recipes need ImageNet and, for the fine-tuning
rows, DeiT weights in a local file (see the parameter files)."""


CLAIM = [
    md("""
# Does DropIT cost accuracy? The claim study

The paper reports equal or better accuracy with DropIT (CIFAR-100 ResNet-18 77.96 → 78.17,
ViT-B/16 90.32 → 90.90) and explains it by less gradient noise. This notebook opens on the study
committed in `docs/claim` (`make claim` wrote it): every arm trained with the same seeds (same
initial weights, batches and crops), so arm − plain is compared seed by seed, with a Student-t 95%
interval. Arms are named by their DropIT settings: strategy, γ, and the lossy companion where one
is on. Protocol, recipe and commands: `docs/claim.md`.

""" + CITE),
    params("""
study_dir = "docs/claim"  # the study to show: the committed one (make claim), or a folder python -m dropit.lab.claim --out wrote
protocols = ["cnn", "vit"]
mechanism_json = ""  # a mechanism file to show; "": every mechanism*.json in study_dir
run_check = False  # True (make reproduce): also run a small pipeline check into check_dir, shown at the end
check_dir = "results/claim_check"  # where the pipeline check writes (never the study above)
check_protocol = "cnn"
check_arms = ["plain", "mink"]
check_seeds = 1
check_max_steps = 200
check_val_subset = 2000  # test images scored by the check
check_overrides = []  # more changes for its runs, each as --set takes them (python -m dropit.lab.claim)
"""),
    code("""
import json
from IPython.display import Markdown, display
from dropit.lab.claim import figures, markdown
from dropit.lab.claim.summary import equal_memory_files, load_runs, mechanism_files
from dropit.lab.reproduce.rows import resolve, resolve_out

study = resolve(study_dir)
runs = load_runs(study)
summary = json.loads((study / "claim.json").read_text()) if (study / "claim.json").is_file() else {"runs": [], "protocols": {}}
"""),
    md("""
## The answer

Per protocol and arm: test top-1 minus plain's, paired by seed, with its 95% interval. An interval
clear of the dashed zero line is a difference; one that holds zero is within noise.
"""),
    code("""
if summary["protocols"]:
    figures.answer_figure(summary).show()
print(len(runs), "finished runs in", study_dir + ":", ", ".join(summary["runs"]) or "none yet (make claim runs the study)")
"""),
    md("""
## Test top-1 and training loss per epoch

Each arm's mean over its seeds, with a band from the lowest to the highest seed.
"""),
    code("""
for protocol in protocols:
    if protocol in summary["protocols"]:
        figures.curves_figure(runs, protocol).show()
"""),
    md("""
## Top-1, per arm

Mean ± standard deviation over seeds; against plain, the mean per-seed difference with its
Student-t 95% interval (n − 1 degrees of freedom); the verdict is computed from the interval.
"""),
    code("""
Markdown(markdown.top1_markdown(summary))
"""),
    md("The other metrics (top-5, final training loss, test loss), paired the same way."),
    code("""
Markdown(markdown.other_metrics_markdown(summary))
"""),
    md("""
## The mechanism: less noise, or a biased gradient?

At a few steps of a plain run, against the exact gradient of a reference set of minibatches
(`dropit.lab.claim.mechanism`): left, DropIT's bias (its expected gradient minus the exact one)
as a share of the exact gradient's norm; right, DropIT's minibatch noise over plain's at the same
weights. The caption under each title states what the measurement shows.
"""),
    code("""
for path in ([resolve(mechanism_json)] if mechanism_json else mechanism_files(study)):
    fig = figures.mechanism_figure_of(path, title=f"Less noise, or a biased gradient? ({path.name})")
    fig.show() if fig is not None else print("no mechanism file:", path)
"""),
    md("""
## Strategies at equal memory: does unbiased keeping remove the bias?

Each strategy at the γ that keeps `mink`'s bytes: its bias beside the bias a strategy without one
would read on the same minibatches (its standard error), and its noise and distance to the exact
gradient as multiples of plain's.
"""),
    code("""
for path in equal_memory_files(study):
    display(Markdown(f"**{path.name}**\\n\\n" + markdown.equal_memory_markdown(json.loads(path.read_text()))))
"""),
    md("""
## Pipeline check (not an answer)

With `run_check = True` (`make reproduce` sets it) a small version of the study runs into
`check_dir`: a few hundred steps per arm, one seed. It tests that the pipeline trains, records and
summarizes; it says nothing about the claim.
"""),
    code("""
if run_check:
    from dropit.lab.claim.study import run_study

    sets = [f"max_steps={check_max_steps}", f"val_subset={check_val_subset}", *check_overrides]
    check = run_study(resolve_out(check_dir), protocol=check_protocol, arms=check_arms, seeds=check_seeds, overrides=sets)
    figures.curves_figure(load_runs(resolve_out(check_dir)), check_protocol,
                          title=f"pipeline check ({check_max_steps} steps, not an answer)").show()
    display(Markdown(markdown.top1_markdown(check)))
"""),
]


def notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    return nb


NOTEBOOKS = {
    "quickstart": QUICKSTART,
    "explore": EXPLORE,
    "cifar100": table_notebook("cifar100", "CIFAR-100"),
    "imagenet": table_notebook("imagenet", "ImageNet-1k"),
    "iclr": table_notebook("iclr", "ICLR 2023 release (DeiT)", ICLR_NOTE),
    "memory": MEMORY,
    "claim": CLAIM,
}


def write_all(out_dir: Path = HERE) -> list[Path]:
    paths = []
    for name, cells in NOTEBOOKS.items():
        path = Path(out_dir) / f"{name}.ipynb"
        nb = notebook(cells)
        for i, cell in enumerate(nb.cells):  # stable ids: regenerating changes nothing
            cell["id"] = f"{name}-{i:02d}"
        nbformat.validate(nb)
        nbformat.write(nb, path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write_all():
        print("wrote", p)
