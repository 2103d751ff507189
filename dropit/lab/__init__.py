"""The experiment layer of the DropIT kit, grouped by concept; imports point down this list.

- :mod:`dropit.lab.io`         the one atomic JSON writer
- :mod:`dropit.lab.data`       CIFAR-100 / ImageNet / Imagenette readers, transforms, the downloader
- :mod:`dropit.lab.models`     ``build_model(name, ...)``, the layers left dense, real packages' models (``zoo``)
- :mod:`dropit.lab.train`      one run: ``config``, ``loop`` (``run``, the command line), ``optim``,
  ``metrics``, ``checkpoint``, ``runtime``, ``step_memory``
- :mod:`dropit.lab.measure`    the paper's Cache column (``cache``) and the memory/time ``frontier``
- :mod:`dropit.lab.plots`      plotly figures, shared by the report and the notebooks (imports plotly)
- :mod:`dropit.lab.reproduce`  the paper's numbers (``paper``), run rows (``rows``), ``tables``,
  ``report``, and ``make reproduce`` (``run``)
- :mod:`dropit.lab.notebook`   what the notebooks call: ``bench``, ``widgets`` (the only UI module), ``teach``

Command line::

    DROPIT_DATA=../shared/data python -m dropit.lab.train params/smoke.yaml out_dir=runs/smoke
    torchrun --standalone --nproc_per_node=2 -m dropit.lab.train params/smoke.yaml
    python -m dropit.lab.reproduce
"""
