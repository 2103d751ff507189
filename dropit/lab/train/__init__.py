"""One training run: its config, the loop's phases, optimiser, metrics, checkpoints and runtime.

    python -m dropit.lab.train params/smoke.yaml out_dir=runs/smoke
    from dropit.lab.train import run; metrics = run("params/smoke.yaml")
"""
from dropit.lab.train.config import ConfigError, RunConfig, load_config
from dropit.lab.train.loop import main, run

__all__ = ["ConfigError", "RunConfig", "load_config", "main", "run"]
