"""The experiment layer of the DropIT kit: data, models, training, results.

Modules (import what you need; only ``widgets`` and ``plots`` import a UI stack):

- :mod:`dropit.lab.config`      ``RunConfig`` and ``load_config(path, overrides)``
- :mod:`dropit.lab.data`        CIFAR-100 / ImageNet / Imagenette readers and loaders
- :mod:`dropit.lab.models`      ``build_model(name, num_classes, ...)`` and the DropIT layer filter
- :mod:`dropit.lab.train`       ``run(config, callbacks)``, the phases of a run (``Trainer``), the command line
- :mod:`dropit.lab.optim`       optimiser and learning-rate schedule
- :mod:`dropit.lab.runtime`     rank, world size and device (torchrun); the environment record
- :mod:`dropit.lab.metrics`     top-k accuracy, running averages, DDP reduction
- :mod:`dropit.lab.checkpoint`  atomic checkpoints and RNG state for exact resume
- :mod:`dropit.lab.tables`      the paper's tables with our runs beside them
- :mod:`dropit.lab.paper`       the paper's numbers as plain data
- :mod:`dropit.lab.memory`      the paper's Cache (MB) column from the memory meter
- :mod:`dropit.lab.rows`        run table rows (in process or through torchrun)
- :mod:`dropit.lab.reproduce`   ``make reproduce``: the notebooks through papermill
- :mod:`dropit.lab.report`      results/tables.md and the self-contained report.html
- :mod:`dropit.lab.teach`       the quickstart's small computations
- :mod:`dropit.lab.plots`       plotly figures (imports plotly)
- :mod:`dropit.lab.widgets`     ipywidgets panels and live plots (the only UI module)

Command line::

    DROPIT_DATA=../shared/data python -m dropit.lab.train params/smoke.yaml out_dir=runs/smoke
    torchrun --standalone --nproc_per_node=2 -m dropit.lab.train params/smoke.yaml
"""
