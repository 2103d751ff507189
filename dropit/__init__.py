"""DropIT: train with less memory by caching only the largest-magnitude inputs.

Chen et al., "DropIT: Dropping Intermediate Tensors for Memory-Efficient DNN
Training", ICLR 2023 (arXiv 2202.13808). Convolution and linear layers keep
their input for the weight gradient; DropIT keeps only its largest-magnitude
elements, packed compactly, and expands them in backward.

    import dropit
    model = dropit.to_dropit(model, gamma=0.9)    # strategy="mink" for the paper's exact min-k
    # quantize="int8" also keeps BatchNorm/LayerNorm/GELU/SiLU/attention inputs in 8 bits (lossy)
    report = dropit.measure_cache(model, images)   # bytes kept for backward, per layer

The core depends on torch alone; the experiment layer lives in ``dropit.lab``.
"""
from .budget import compile_budgeted
from .planner import Plan, plan
from .checkpoint import checkpoint_blocks, checkpointed_modules
from .draws import seed_draws
from .convert import DropITForward, converted_modules, restore, set_gamma, to_dropit
from .meter import CacheMeter, CacheReport, estimate_cache, measure_cache
from . import ops  # registers the dropit:: custom ops
from .quant import LEVELS as QUANTIZE_LEVELS
from .quant import QLayout, QRecord
from .record import Layout, Record
from .relu import masked_relu
from .sparsify import DropSpec, expand, sparsify
from .strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy

__all__ = [
    "to_dropit",
    "compile_budgeted", "plan", "Plan",
    "set_gamma",
    "seed_draws",
    "restore",
    "converted_modules",
    "checkpoint_blocks",
    "checkpointed_modules",
    "QUANTIZE_LEVELS",
    "QRecord",
    "QLayout",
    "DropITForward",
    "DropSpec",
    "sparsify",
    "expand",
    "Record",
    "Layout",
    "masked_relu",
    "measure_cache",
    "estimate_cache",
    "CacheMeter",
    "CacheReport",
    "STRATEGIES",
    "Strategy",
    "DEFAULT_STRATEGY",
]
__version__ = "0.1.0"
