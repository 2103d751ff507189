"""The one fresh-process runner: a memory measurement in a new Python process, its row back as JSON.

    row = in_fresh_process("dropit.lab.measure.frontier:measure_memory", model_key="tiny", config="plain")

Resident memory is a property of the whole process: what an earlier row
allocated, imported or compiled would count in the next. So each memory row
(the frontier's, ``benchmarks/memory.py``'s and ``benchmarks/models.py``'s) runs
``FUNCTION(**kwargs)`` in a process of its own: ``python -m
dropit.lab.measure.process MODULE:FUNCTION JSON``, which prints the function's
JSON-able result as its last line. The environment is :data:`ENV`:
``MALLOC_MMAP_THRESHOLD_=65536`` makes glibc return freed large tensors to the
system (the growth is what stays allocated, not what the allocator kept
cached), and two OpenMP threads, as the measurements are taken.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "2"}
ROOT = Path(__file__).resolve().parents[3]  # the kit's checkout: its benchmarks and the package


def in_fresh_process(function: str, **kwargs):
    """``function`` (``"package.module:name"``) called with ``kwargs`` in a new Python process; its result.
    A failure raises RuntimeError with the end of the child's stderr."""
    env = dict(os.environ, **ENV, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "dropit.lab.measure.process", function, json.dumps(kwargs)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{function}({kwargs}) failed in its fresh process:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    function, kwargs = (argv if argv is not None else sys.argv[1:])
    module, _, name = function.partition(":")
    print(json.dumps(getattr(importlib.import_module(module), name)(**json.loads(kwargs))))


if __name__ == "__main__":
    main()
