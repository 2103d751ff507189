"""Lossy companions of the normalization layers: BatchNorm, LayerNorm and RMSNorm keeping a quantized input.

Each runs PyTorch's own forward kernel on the dense input, so its output (and
BatchNorm's running statistics) equal the plain module's bit for bit, and
saves, instead of the dense input, its quantized record (:mod:`dropit.quant`)
plus the exact per-channel or per-row statistics the forward computed.
Backward dequantizes the input and runs PyTorch's own backward kernel
(``_batch_norm_impl_index_backward``, ``native_layer_norm_backward``; RMSNorm,
which has no backward kernel on CPU, by its formula from the dequantized input,
1/rms included, in fp32 as ``torch.rms_norm`` computes). Hugging Face's RMSNorm
classes (:mod:`dropit.hf_modules`) run their own forward instead of torch's.
The gradients are therefore approximate: exact statistics, input rounded to
8 or 4 bits per group. Only training-mode forwards with grad enabled come
here (:class:`dropit.convert.DropITForward`).
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import quant
from .functional import _no_autocast

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
TORCH_RMSNORM = getattr(nn, "RMSNorm", None)  # torch >= 2.4


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _QuantBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float, bits: int):
        out, save_mean, save_invstd, reserve, impl = torch._batch_norm_impl_index(
            x, weight, bias, running_mean, running_var, True, momentum, eps, torch.backends.cudnn.enabled
        )
        record = quant.quantize(x, bits)
        ctx.layout, ctx.eps, ctx.impl = record.layout, eps, impl
        ctx.save_for_backward(*record.saved, weight, running_mean, running_var, save_mean, save_invstd, reserve)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        *saved, weight, running_mean, running_var, save_mean, save_invstd, reserve = ctx.saved_tensors
        x = quant.dequantize(quant.QRecord.from_saved(saved, ctx.layout))
        mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1], ctx.needs_input_grad[2]]
        with _no_autocast(grad_out.device.type):
            gx, gw, gb = torch.ops.aten._batch_norm_impl_index_backward(
                # grad in x's memory format, as autograd's own formula hands it to cuDNN
                ctx.impl, x, grad_out.contiguous(memory_format=_memory_format(x)), weight, running_mean,
                running_var, save_mean, save_invstd, True, ctx.eps, mask, reserve,
            )
        return gx, gw, (gb if ctx.needs_input_grad[2] else None), None, None, None, None, None


def _memory_format(x: torch.Tensor):
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def batchnorm_forward(m: nn.modules.batchnorm._BatchNorm, spec, x: torch.Tensor) -> torch.Tensor:
    """``m(x)`` in training mode keeping ``x`` quantized; running statistics updated as ``m`` does."""
    m._check_input_dim(x)
    if not _needs_grad(x, m.weight, m.bias) or x.numel() == 0:
        return type(m).forward(m, x)
    if x.shape[0] * x[0, 0].numel() <= 1:  # one value per channel: the plain forward raises its error
        return type(m).forward(m, x)
    momentum = 0.0 if m.momentum is None else m.momentum
    if m.track_running_stats and m.num_batches_tracked is not None:
        m.num_batches_tracked.add_(1)
        if m.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(m.num_batches_tracked)
    rm, rv = (m.running_mean, m.running_var) if m.track_running_stats else (None, None)
    return _QuantBatchNorm.apply(x, m.weight, m.bias, rm, rv, momentum, m.eps, quant.bits_of(spec.quantize))


class _QuantLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, normalized_shape, weight, bias, eps: float, bits: int):
        out, mean, rstd = torch.native_layer_norm(x, normalized_shape, weight, bias, eps)
        record = quant.quantize(x, bits)
        ctx.layout, ctx.normalized_shape = record.layout, normalized_shape
        ctx.save_for_backward(*record.saved, mean, rstd, weight, bias)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        *saved, mean, rstd, weight, bias = ctx.saved_tensors
        x = quant.dequantize(quant.QRecord.from_saved(saved, ctx.layout))
        mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[2],
                bias is not None and ctx.needs_input_grad[3]]
        gx, gw, gb = torch.ops.aten.native_layer_norm_backward(
            grad_out, x, ctx.normalized_shape, mean, rstd, weight, bias, mask
        )
        return gx, None, gw, gb, None, None


def layernorm_forward(m: nn.LayerNorm, spec, x: torch.Tensor) -> torch.Tensor:
    """``m(x)`` keeping ``x`` quantized (its per-row mean and 1/std exact)."""
    if not _needs_grad(x, m.weight, m.bias):
        return nn.LayerNorm.forward(m, x)
    args = _autocast_args(F.layer_norm, x, m.weight, m.bias)
    with _no_autocast(x.device.type):
        return _QuantLayerNorm.apply(args[0], list(m.normalized_shape), args[1], args[2], m.eps,
                                     quant.bits_of(spec.quantize))


class _QuantRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, normalized_shape, weight, eps, bits: int, module):
        out = torch.rms_norm(x, normalized_shape, weight, eps) if module is None else type(module).forward(module, x)
        record = quant.quantize(x, bits)
        ctx.layout, ctx.normalized_shape, ctx.eps = record.layout, normalized_shape, eps
        ctx.save_for_backward(*record.saved, weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        *saved, weight = ctx.saved_tensors
        x = quant.dequantize(quant.QRecord.from_saved(saved, ctx.layout))
        dims = tuple(range(x.dim() - len(ctx.normalized_shape), x.dim()))
        opmath = torch.promote_types(x.dtype, torch.float32)  # as torch.rms_norm computes
        eps = torch.finfo(opmath).eps if ctx.eps is None else ctx.eps  # its default: the compute type's
        xf = x.to(opmath)
        rstd = (xf.square().mean(dims, keepdim=True) + eps).rsqrt()
        xhat = xf * rstd
        g = grad_out.to(opmath)
        gw = g if weight is None else g * weight.to(opmath)
        gx = gw.sub(xhat * (gw * xhat).mean(dims, keepdim=True)).mul_(rstd).to(x.dtype)
        gweight = None
        if weight is not None and ctx.needs_input_grad[2]:  # out = xhat (in x's dtype) * weight
            gweight = (g * xhat.to(x.dtype).to(opmath)).sum(tuple(range(x.dim() - len(dims)))).to(weight.dtype)
        return gx if ctx.needs_input_grad[0] else None, None, gweight, None, None, None


def rmsnorm_forward(m: nn.Module, spec, x: torch.Tensor) -> torch.Tensor:
    """``m(x)`` for ``nn.RMSNorm`` or an HF RMSNorm (:func:`dropit.hf_modules.is_rmsnorm`), keeping
    ``x`` quantized; backward recomputes the norm from it. HF ones run their own forward."""
    if not _needs_grad(x, m.weight):
        return type(m).forward(m, x)
    bits = quant.bits_of(spec.quantize)
    if TORCH_RMSNORM is None or not isinstance(m, TORCH_RMSNORM):  # HF: own forward, as autocast would run it
        return _QuantRMSNorm.apply(x, [m.weight.shape[0]], m.weight, m.variance_epsilon, bits, m)
    args = _autocast_args(torch.rms_norm, x, m.weight)
    with _no_autocast(x.device.type):
        return _QuantRMSNorm.apply(args[0], list(m.normalized_shape), args[1], m.eps, bits, None)


def _autocast_args(op, x: torch.Tensor, *params):
    """x and params as autocast would hand them to ``op``: all cast to fp32 where the
    device's autocast runs ``op`` in fp32 (LayerNorm on CUDA), else unchanged."""
    device = x.device.type
    if device not in ("cpu", "cuda", "xpu", "mps", "hpu") or not torch.is_autocast_enabled(device):
        return (x, *params)
    if _autocast_runs_in_fp32(op, device, torch.get_autocast_dtype(device)):
        return tuple(t.float() if t is not None and t.is_floating_point() else t for t in (x, *params))
    return (x, *params)


@functools.lru_cache(maxsize=None)
def _autocast_runs_in_fp32(op, device: str, dtype: torch.dtype) -> bool:
    """Ask autocast itself: run ``op`` once on a one-element tensor of the autocast dtype."""
    probe = torch.zeros(1, dtype=dtype, device=device)
    with torch.autocast(device, dtype=dtype):
        return op(probe, [1]).dtype == torch.float32


def is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, _BATCHNORMS)
