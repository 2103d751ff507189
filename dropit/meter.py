"""A memory meter: the bytes a training forward keeps for backward, per layer.

Every tensor autograd saves passes through a ``saved_tensors_hooks`` pack hook
(DropIT's own records included, since they are saved with
``ctx.save_for_backward``). The meter counts each underlying storage once, the
whole storage even when only a view is saved (that is what stays alive),
excludes the model's parameters and buffers (the rule of
:class:`dropit.saved.SavedBytes`), and charges the bytes to the innermost
module running when the tensor was saved.

    report = dropit.measure_cache(model, images)        # one real forward
    print(report.table())
    report = dropit.estimate_cache(model, (128, 3, 224, 224))  # meta device, no compute

For DropIT layers the report also gives ``dense_bytes``: the size of the input
the compact record stands for, so the saving is visible layer by layer, and
``storage``: the bytes by how they are stored (a record's kind, "bits",
"index", "int8", "int4", "fewbit4", ..., a ReLU's "1-bit mask", a max pool's
"1-byte offsets", or "plain" for every other saved tensor). On CUDA
``peak_cuda_bytes`` is the allocator's peak over the forward (weights, input,
kept tensors and transients: the paper's "Cache (MB)" protocol).
"""
from __future__ import annotations

import contextlib
import copy
import gc
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .record import observe
from .saved import SavedBytes, storage_key

MiB = 2**20  # the kit's one definition of the unit its tables show


@dataclass
class LayerCache:
    name: str  # qualified module name; "" is the root, "<outside modules>" for functional ops
    kind: str  # module class name
    bytes: int = 0  # kept for backward, each storage once
    dense_bytes: int = 0  # dense size of the inputs DropIT stored compactly here
    tensors: int = 0
    storage: dict[str, int] = field(default_factory=dict)  # bytes by record kind; "plain" for the rest


@dataclass
class CacheReport:
    layers: list[LayerCache]
    device: str
    peak_cuda_bytes: int | None = None
    _order: dict = field(default_factory=dict, repr=False)

    @property
    def total_bytes(self) -> int:
        return sum(layer.bytes for layer in self.layers)

    @property
    def dense_bytes(self) -> int:
        """Dense size of everything DropIT stored compactly."""
        return sum(layer.dense_bytes for layer in self.layers)

    def share(self, layer: LayerCache) -> float:
        total = self.total_bytes
        return layer.bytes / total if total else 0.0

    def to_rows(self) -> list[dict]:
        return [
            {
                "name": layer.name,
                "kind": layer.kind,
                "bytes": layer.bytes,
                "mib": layer.bytes / MiB,
                "share": self.share(layer),
                "dense_bytes": layer.dense_bytes,
                "tensors": layer.tensors,
                "storage": "+".join(layer.storage),
            }
            for layer in self.layers
        ]

    def by_storage(self) -> dict[str, int]:
        """Bytes by how they are stored: record kinds ("bits", "int8", ...) and "plain"."""
        out: dict[str, int] = {}
        for layer in self.layers:
            for kind, nbytes in layer.storage.items():
                out[kind] = out.get(kind, 0) + nbytes
        return out

    def table(self, top: int | None = None) -> str:
        rows = sorted(self.layers, key=lambda l: -l.bytes)[:top] if top else self.layers
        width = max([len(r.name or "(root)") for r in rows] + [5])
        lines = [f"{'layer':<{width}}  {'kind':<20} {'MiB':>10} {'share':>7} {'dense MiB':>10}  stored as"]
        for r in rows:
            dense = f"{r.dense_bytes / MiB:10.2f}" if r.dense_bytes else f"{'':>10}"
            lines.append(
                f"{r.name or '(root)':<{width}}  {r.kind:<20} {r.bytes / MiB:10.2f} {self.share(r):7.1%} {dense}"
                f"  {'+'.join(r.storage)}"
            )
        lines.append(f"{'total':<{width}}  {'':<20} {self.total_bytes / MiB:10.2f}")
        if self.peak_cuda_bytes is not None:
            lines.append(f"CUDA allocator peak over the forward: {self.peak_cuda_bytes / MiB:.1f} MiB")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


class CacheMeter:
    """Context manager recording what is saved for backward inside it.

    ``with CacheMeter(model) as meter: loss = model(x)``; then ``meter.report()``.
    Use it around a forward only: the hooks return tensors unchanged, so
    backward still works, but the meter keeps a reference to nothing.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self._names = {id(m): name for name, m in model.named_modules()}
        self._stack: list[nn.Module] = []
        self._dense: dict[int, int] = {}
        self._record_kind: dict[int, str] = {}
        self._layers: dict[str, LayerCache] = {}
        self._handles: list = []
        self._device = "cpu"

    def __enter__(self) -> "CacheMeter":
        for m in self.model.modules():
            self._handles.append(m.register_forward_pre_hook(self._push))
            self._handles.append(m.register_forward_hook(self._pop, always_call=True))
        self._observe = observe(self._on_sparsify, on_stored=self._on_stored)
        self._observe.__enter__()
        self._saved = SavedBytes(self.model, on_new=self._charge)
        self._saved.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._saved.__exit__(*exc)
        self._observe.__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stack.clear()

    def _push(self, module, args):
        self._stack.append(module)

    def _pop(self, module, args, output):
        if self._stack and self._stack[-1] is module:
            self._stack.pop()

    def _on_sparsify(self, dense: torch.Tensor, record) -> None:
        nbytes = dense.numel() * dense.element_size()
        keys = [storage_key(t) for t in record.saved]
        for i, key in enumerate(keys):  # charge the dense size once, to the record's first storage
            self._dense.setdefault(key, nbytes if i == 0 else 0)
            self._record_kind.setdefault(key, record.layout.kind)

    def _on_stored(self, saved: torch.Tensor, kind: str) -> None:
        self._record_kind.setdefault(storage_key(saved), kind)

    def _charge(self, t: torch.Tensor, key: int, nbytes: int) -> None:
        """A storage saved for the first time: its bytes go to the innermost module running."""
        self._device = t.device.type
        owner = self._stack[-1] if self._stack else None
        name = self._names.get(id(owner), "<outside modules>") if owner is not None else "<outside modules>"
        layer = self._layers.get(name)
        if layer is None:
            layer = self._layers[name] = LayerCache(name, type(owner).__name__ if owner is not None else "-")
        layer.bytes += nbytes
        layer.dense_bytes += self._dense.get(key, 0)
        layer.tensors += 1
        kind = self._record_kind.get(key, "plain")
        layer.storage[kind] = layer.storage.get(kind, 0) + nbytes

    def report(self, peak_cuda_bytes: int | None = None) -> CacheReport:
        return CacheReport(list(self._layers.values()), self._device, peak_cuda_bytes)


def measure_cache(model: nn.Module, *inputs, **kwargs) -> CacheReport:
    """One training-mode forward of ``model(*inputs, **kwargs)``; what it keeps for backward.

    The model is put in training mode for the forward; no backward runs and the
    model is left as it was found: each module's mode, every buffer (BatchNorm's
    running statistics and batch counter included) and the random number
    generators (CPU, and CUDA where it is in use) are restored afterwards.
    Nothing is kept once this returns.
    """
    cuda = any(isinstance(t, torch.Tensor) and t.is_cuda for t in inputs)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with _state_kept(model):
        model.train()
        with torch.enable_grad(), CacheMeter(model) as meter:
            out = model(*inputs, **kwargs)
        peak = None
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        del out
    gc.collect()
    return meter.report(peak)


@contextlib.contextmanager
def _state_kept(model: nn.Module):
    """Restore, after the block, each module's training flag, every buffer and the RNG states.

    The buffers' values are copied to the CPU (so a CUDA peak measured inside
    does not count the copies); meta buffers hold no values and are left as they are.
    """
    modes = [(m, m.training) for m in model.modules()]
    buffers = [
        (m, name, b, None if b.is_meta else b.detach().to("cpu", copy=True))
        for m in model.modules() for name, b in m._buffers.items() if b is not None
    ]
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for m, name, b, values in buffers:
                m._buffers[name] = b  # the same tensor object, should the forward have replaced it
                if values is not None:
                    b.copy_(values)
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def _fused_attention_on_meta():
    """Meta tensors make ``F.scaled_dot_product_attention`` take its unfused math
    path, which saves the (L, S) attention matrix; real CPU and CUDA runs take a
    fused kernel that saves only q, k, v, the output and a logsumexp. For the
    duration of an estimate, route meta calls to that kernel (its CPU form, whose
    saved sizes equal the CUDA kernels'), so estimates match real runs. The
    function is looked up at call time by ``nn.MultiheadAttention`` and by
    dropit's attention, hence the scoped replacement."""
    original = F.scaled_dot_product_attention

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if query.is_meta and not enable_gqa:
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
            )[0]
        return original(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def estimate_cache(model: nn.Module, *input_shapes, dtype: torch.dtype = torch.float32) -> CacheReport:
    """:func:`measure_cache` on the meta device: sizes without computing or allocating.

    ``input_shapes`` are shapes (tuples) or tensors; the model is copied to the
    meta device (the original is untouched). Strategies whose kept count depends
    on the data are assumed to keep exactly (1 - gamma) * n elements; attention
    is assumed to run a fused kernel, as it does on CPU and CUDA.
    """
    meta_model = copy.deepcopy(model).to("meta")
    meta_inputs = [
        torch.empty(s.shape, dtype=s.dtype, device="meta") if isinstance(s, torch.Tensor)
        else torch.empty(tuple(s), dtype=dtype, device="meta")
        for s in input_shapes
    ]
    with _fused_attention_on_meta():
        return measure_cache(meta_model, *meta_inputs)
