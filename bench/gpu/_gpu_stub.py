"""Runs a GPU-check script on the CPU with CUDA stubbed: a dry run of bench/gpu/gpu_check.sh on a
machine without a GPU (COSPEC_GPU_STUB=1 bash bench/gpu/gpu_check.sh), so that every case runs
end to end (shapes, comparisons, reports) before a GPU is ever lent.

    python bench/gpu/_gpu_stub.py SCRIPT [ARGS...]
    python bench/gpu/_gpu_stub.py -m MODULE [ARGS...]      # e.g. -m pytest tests/test_special_rows.py

"cuda" tensors are CPU tensors: device="cuda[:k]" arguments become "cpu", Tensor.cuda() and
.to("cuda...") copy, torch.cuda's queries and streams are no-ops, events time with
perf_counter, torch.ops.cospec.* then run the CPU kernels. So a stub run checks the harness
and the CPU side of every comparison, never a CUDA kernel. COSPEC_GPU_STUB=1 is set for the
script, which may shrink or skip its largest cases (it says so in its output).
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys
import time

import torch
from torch.overrides import TorchFunctionMode


def _cpu(dev):
    if dev is None:
        return None
    d = torch.device(dev) if isinstance(dev, (str, int)) and not isinstance(dev, bool) else dev
    return torch.device("cpu") if isinstance(d, torch.device) and d.type == "cuda" else dev


def _is_cuda(v) -> bool:
    return isinstance(v, (str, torch.device)) and torch.device(v).type == "cuda"


class _CudaIsCpu(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        to_cuda = _is_cuda(kwargs.get("device"))
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        if func is torch.Tensor.cuda:
            return args[0].clone()
        if func is torch.Tensor.to:
            a = list(args)
            for i, v in enumerate(a[1:], 1):
                if _is_cuda(v):
                    a[i], to_cuda = torch.device("cpu"), True
            if to_cuda:  # a real host-to-device copy is a new tensor
                kwargs["copy"] = True
            args = tuple(a)
        return func(*args, **kwargs)


class _Event:
    def __init__(self, *a, **k):
        self.t = 0.0

    def record(self, *a):
        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return (other.t - self.t) * 1e3


class _Stream:
    def __init__(self, *a, **k):
        pass

    def synchronize(self):
        pass

    def wait_stream(self, *a):
        pass


def install() -> None:
    c = torch.cuda
    c.is_available = lambda: True
    c.device_count = lambda: 1
    c.current_device = lambda: 0
    c.get_device_name = lambda *a: "CPU (CUDA stubbed: bench/gpu/_gpu_stub.py)"
    c.get_device_capability = lambda *a: (9, 0)
    for name in ("synchronize", "empty_cache", "set_device", "_sleep", "reset_peak_memory_stats"):
        setattr(c, name, lambda *a, **k: None)
    c.max_memory_allocated = lambda *a, **k: 0
    c.Event, c.Stream = _Event, _Stream
    c.stream = lambda *a, **k: contextlib.nullcontext()
    c.device = lambda *a, **k: contextlib.nullcontext()
    c.current_stream = lambda *a, **k: _Stream()
    import cospec_ext

    cospec_ext.BUILT_WITH_CUDA = True
    os.environ["COSPEC_GPU_STUB"] = "1"
    _CudaIsCpu().__enter__()


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    install()
    try:
        if sys.argv[1] == "-m":  # python bench/gpu/_gpu_stub.py -m pytest ...
            module = sys.argv[2]
            sys.argv = [module] + sys.argv[3:]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            script = sys.argv[1]
            sys.argv = sys.argv[1:]
            sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
