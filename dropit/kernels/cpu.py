"""The fused CPU kernels: ``csrc/*.c``, compiled on first use into one library loaded with ctypes.

The C files need no torch headers, so they compile in seconds with the
system's C compiler (``$CC``, else ``cc`` or ``gcc``) for this machine's CPU
(``-march=native``), into a cache folder (``$DROPIT_CACHE``, else
``$XDG_CACHE_HOME/dropit`` or ``~/.cache/dropit``) keyed by the source, the
compiler and the CPU. Its OpenMP resolves to the ``libgomp`` that torch has
already loaded, so the kernels run on torch's own threads.

Without a compiler, or with ``DROPIT_KERNELS=torch``, :func:`library` returns
None and :mod:`dropit.kernels` runs the torch reference instead (slower, same
results); a warning says why, once.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SOURCES = sorted((Path(__file__).with_name("csrc")).glob("*.c"))  # dropit_cpu.c, dropit_quant.c
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
WIDTHS = (16, 32, 64)  # element widths in bits: bf16/fp16, fp32, fp64
DRAW_WIDTHS = (32, 64)  # draw_mask: fp32 and fp64 (16-bit inputs take the torch reference)

_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "threshold": (_I64, [_P, _I64, _I64, _INT]),
    "kth_key": (_I64, [_P, _I64, _I64]),
    "compress": (_I64, [_P, _P, _I64, _I64, _I64, _P, _P, _INT]),
    "expand": (None, [_P, _P, _I64, _P, _INT]),
    "pack_nonzero": (None, [_P, _I64, _P, _INT]),
    "mask_grad": (None, [_P, _P, _I64, _P, _INT]),
}


def cache_dir() -> Path:
    if os.environ.get("DROPIT_CACHE"):
        return Path(os.environ["DROPIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dropit"


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return platform.machine() + "".join(lines)


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc"):
        if cc and shutil.which(cc):
            return shutil.which(cc)
    return None


def _build(cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        "\0".join([*(src.read_text() for src in SOURCES), " ".join(FLAGS), version, _cpu_signature()]).encode()
    ).hexdigest()[:16]
    target = cache_dir() / f"dropit_cpu_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)  # same folder: the rename is atomic
    os.close(fd)
    try:
        result = subprocess.run([cc, *FLAGS, *map(str, SOURCES), "-o", tmp], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{cc} failed:\n{result.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded kernel library, or None (with one warning saying why) to use the torch reference."""
    if os.environ.get("DROPIT_KERNELS", "").lower() == "torch":
        return None
    cc = _compiler()
    if cc is None:
        warnings.warn("dropit: no C compiler found (set CC); using the slower pure-torch kernels", stacklevel=3)
        return None
    try:
        lib = ctypes.CDLL(str(_build(cc)))
    except (OSError, RuntimeError) as e:
        warnings.warn(f"dropit: could not build the CPU kernels ({e}); using the slower pure-torch kernels", stacklevel=3)
        return None
    for name, (restype, argtypes) in _SIGNATURES.items():
        for w in WIDTHS:
            fn = getattr(lib, f"dropit_{name}_{w}")
            fn.restype, fn.argtypes = restype, argtypes
    for w in DRAW_WIDTHS:
        fn = getattr(lib, f"dropit_draw_mask_{w}")
        fn.restype, fn.argtypes = None, [_P, _I64, ctypes.c_double, _I64, _P, _INT]
    return lib


def _fn(name: str, t: torch.Tensor):
    return getattr(library(), f"dropit_{name}_{t.element_size() * 8}")


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def threshold(flat: torch.Tensor, rank: int, samples: int) -> int:
    log2s = samples.bit_length() - 1
    if samples != 1 << log2s:
        raise ValueError(f"the sample size must be a power of two, got {samples}")
    thr = _fn("threshold", flat)(flat.data_ptr(), flat.numel(), rank, log2s)
    if thr < -1:
        raise MemoryError("dropit: out of memory for the threshold sample")
    return thr


def kth_key(flat: torch.Tensor, rank: int) -> int:
    key = _fn("kth_key", flat)(flat.data_ptr(), flat.numel(), rank)
    if key < -1:
        raise MemoryError("dropit: out of memory selecting a key")
    return key


def compress(flat: torch.Tensor, capacity: int, thr: int, mask: torch.Tensor | None):
    n = flat.numel()
    values = flat.new_empty(capacity)
    bits = torch.empty((n + 7) // 8, dtype=torch.uint8)
    if mask is not None:
        mask = mask.reshape(-1).contiguous().view(torch.uint8)
    count = _fn("compress", flat)(
        flat.data_ptr(), _ptr(mask), n, thr, capacity, values.data_ptr(), bits.data_ptr(), torch.get_num_threads()
    )
    if count < capacity:
        values[count:].zero_()  # what the reference stores there; a few bytes at most
    return values, bits, torch.tensor(count, dtype=torch.int64)


def expand(values: torch.Tensor, bits: torch.Tensor, n: int) -> torch.Tensor:
    out = values.new_empty(n)
    _fn("expand", values)(values.data_ptr(), bits.data_ptr(), n, out.data_ptr(), torch.get_num_threads())
    return out


def pack_nonzero(flat: torch.Tensor) -> torch.Tensor:
    bits = torch.empty((flat.numel() + 7) // 8, dtype=torch.uint8)
    _fn("pack_nonzero", flat)(flat.data_ptr(), flat.numel(), bits.data_ptr(), torch.get_num_threads())
    return bits


def mask_grad(grad: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(grad)
    _fn("mask_grad", grad)(grad.data_ptr(), bits.data_ptr(), grad.numel(), out.data_ptr(), torch.get_num_threads())
    return out


def draw_mask(flat: torch.Tensor, tau: float, key: int) -> torch.Tensor:
    mask = torch.empty(flat.numel(), dtype=torch.bool)
    _fn("draw_mask", flat)(flat.data_ptr(), flat.numel(), tau, key, mask.data_ptr(), torch.get_num_threads())
    return mask
