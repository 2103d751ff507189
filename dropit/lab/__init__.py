"""The experiment layer of the DropIT kit, in layers; imports point down this list
(``tests/test_structure.py`` checks it).

- leaves: :mod:`~dropit.lab.io` (the one atomic file writer), :mod:`~dropit.lab.paper` (the
  paper's numbers), :mod:`~dropit.lab.download` (fetching datasets and weights),
  :mod:`~dropit.lab.stats` (standard errors and the "within noise" rule)
- :mod:`dropit.lab.models`     ``build_model(name, ...)``, the default image size, the layers left
  dense, pretrained ``weights`` by name, real packages' models (``zoo``)
- :mod:`dropit.lab.data`       CIFAR-100 / ImageNet / Imagenette readers and transforms; batches
  augmented on the device (``augment``, ``tensor_loader``)
- :mod:`dropit.lab.train`      one run: ``config``, ``loop`` (``run``, the command line),
  ``results`` (metrics.json), ``evaluate``, ``optim``, ``metrics``, ``checkpoint``, ``runtime``,
  ``step_memory``
- :mod:`dropit.lab.measure`    the paper's Cache column (``cache``) and the memory/time
  ``frontier`` (eager and compiled rows)
- :mod:`dropit.lab.plots`      plotly figures, shared by the report and the notebooks (imports plotly)
- :mod:`dropit.lab.claim`      the accuracy study: does DropIT cost accuracy?
- :mod:`dropit.lab.reproduce`  run rows (``rows``), ``tables``, ``report``, ``dry_run``, and
  ``make reproduce`` (``run``)
- :mod:`dropit.lab.notebook`   what the notebooks call: ``bench``, ``widgets`` (the only UI
  module), ``teach``, ``planner_widget``

Command line::

    DROPIT_DATA=../shared/data python -m dropit.lab.train params/smoke.yaml out_dir=runs/smoke
    torchrun --standalone --nproc_per_node=2 -m dropit.lab.train params/smoke.yaml
    python -m dropit.lab.reproduce [--preset paper --dry-run]
    python -m dropit.lab.claim --out results/claim
"""
