"""Models: the paper's and the small demo models by name, and real packages' models to convert."""
from dropit.lab.models.catalog import MODEL_NAMES, apply_dropit, build_model

__all__ = ["MODEL_NAMES", "apply_dropit", "build_model"]
