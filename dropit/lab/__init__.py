"""The experiment layer of the DropIT kit: data, models, training, results.

Modules (import what you need; nothing here imports a UI):

- :mod:`dropit.lab.config`      ``RunConfig`` and ``load_config(path, overrides)``
- :mod:`dropit.lab.data`        CIFAR-100 / ImageNet / Imagenette readers and loaders
- :mod:`dropit.lab.models`      ``build_model(name, num_classes, ...)`` and the DropIT layer filter
- :mod:`dropit.lab.train`       ``run(config, callbacks)`` and the command line
- :mod:`dropit.lab.metrics`     top-k accuracy, running averages, DDP reduction
- :mod:`dropit.lab.checkpoint`  atomic checkpoints and RNG state for exact resume
- :mod:`dropit.lab.tables`      the paper's tables with our runs beside them
- :mod:`dropit.lab.paper`       the paper's numbers as plain data

Command line::

    DROPIT_DATA=../shared/data python -m dropit.lab.train params/smoke.yaml out_dir=runs/smoke
    torchrun --standalone --nproc_per_node=2 -m dropit.lab.train params/smoke.yaml
"""
