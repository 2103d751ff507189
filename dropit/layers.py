"""Training-time forwards of the layers DropIT sparsifies (and of ReLU and MaxPool2d).

Each function takes the original module and its call arguments and computes the
same output as the module's own forward, routing the cached input through the
sparsifying functions. They only run in training mode with grad enabled; the
:class:`~dropit.convert.DropITForward` wrapper calls the untouched forward
otherwise. Which module gets which forward is decided in :mod:`dropit.kinds`;
the forwards of the lossy companions live in :mod:`dropit.norms`,
:mod:`dropit.activations` and :mod:`dropit.attention`.

Hugging Face transformers' ``Conv1D`` (GPT-2 and its relatives) is a Linear
whose weight is stored transposed, (in, out). It is recognised by its
structure (:func:`is_hf_conv1d`), so the core never imports transformers;
its GELU, SiLU and RMSNorm classes likewise (:mod:`dropit.hf_modules`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import functional as DF
from .pool import compact_max_pool2d
from .relu import masked_relu
from .sparsify import DropSpec


def linear_forward(m: nn.Linear, spec: DropSpec, x: torch.Tensor) -> torch.Tensor:
    return DF.linear(x, m.weight, m.bias, spec)


def hf_conv1d_forward(m: nn.Module, spec: DropSpec, x: torch.Tensor) -> torch.Tensor:
    # Conv1D computes x @ W + b with W of shape (in, out): F.linear with the (out, in) view W.t().
    return DF.linear(x, m.weight.t(), m.bias, spec)


def is_hf_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is transformers' ``Conv1D``: a Linear with its weight stored (in, out).

    Recognised by structure, without importing transformers: the class name
    ``Conv1D`` (torch's own is ``Conv1d``), an ``nf`` (out features) attribute,
    a 2-d weight of shape (nx, nf) and a bias of shape (nf,) or none.
    """
    if type(module).__name__ != "Conv1D":
        return False
    weight, bias, nf = getattr(module, "weight", None), getattr(module, "bias", None), getattr(module, "nf", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or not isinstance(nf, int):
        return False
    if weight.shape[1] != nf or getattr(module, "nx", weight.shape[0]) != weight.shape[0]:
        return False
    return bias is None or (isinstance(bias, torch.Tensor) and tuple(bias.shape) == (nf,))


def conv_forward(m: nn.modules.conv._ConvNd, spec: DropSpec, x: torch.Tensor) -> torch.Tensor:
    nd = len(m.kernel_size)
    if m.padding_mode != "zeros":
        x = F.pad(x, m._reversed_padding_repeated_twice, mode=m.padding_mode)
        padding = [0] * nd
    elif m.padding == "valid":
        padding = [0] * nd
    elif m.padding == "same":
        pads = m._reversed_padding_repeated_twice  # (left_last, right_last, ...)
        lefts, rights = pads[0::2], pads[1::2]
        if lefts != rights:  # even kernels: pad the extra element on the right
            x = F.pad(x, pads)
            padding = [0] * nd
        else:
            padding = list(reversed(lefts))
    else:
        padding = list(m.padding)
    return DF.convolution(
        x, m.weight, m.bias, spec, stride=m.stride, padding=padding, dilation=m.dilation, groups=m.groups
    )


def conv_transpose_forward(m, spec: DropSpec, x: torch.Tensor, output_size=None) -> torch.Tensor:
    nd = len(m.kernel_size)
    output_padding = m._output_padding(x, output_size, m.stride, m.padding, m.kernel_size, nd, m.dilation)
    return DF.convolution(
        x,
        m.weight,
        m.bias,
        spec,
        stride=m.stride,
        padding=m.padding,
        dilation=m.dilation,
        transposed=True,
        output_padding=output_padding,
        groups=m.groups,
    )


def relu_forward(m: nn.ReLU, spec: DropSpec, x: torch.Tensor) -> torch.Tensor:
    if spec.gamma == 0.0:  # nothing is dropped downstream: the mask would only add bytes
        return nn.ReLU.forward(m, x)
    return masked_relu(x, inplace=m.inplace)


def maxpool_forward(m: nn.MaxPool2d, spec: DropSpec, x: torch.Tensor) -> torch.Tensor:
    return compact_max_pool2d(x, m)
