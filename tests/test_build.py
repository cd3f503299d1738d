"""What the build registered: every op has a CPU kernel, and a CUDA kernel exactly
when the extension was built with CUDA."""

from __future__ import annotations

import pytest
import torch

import cospec_ext

OPS = ["verify_tree", "logit_stats", "arbiter_score", "kv_rollback", "node_features", "commit_tokens", "tree_mask",
       "linear_rows", "linear_packed", "linear_auto", "tree_attention"]


@pytest.mark.parametrize("op", OPS)
def test_dispatch_keys(op):
    name = f"cospec::{op}"
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CPU")
    has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA")
    assert has_cuda == cospec_ext.BUILT_WITH_CUDA, (
        f"{name}: CUDA kernel registered = {has_cuda}, build had CUDA = {cospec_ext.BUILT_WITH_CUDA}"
    )


def test_cuda_build_when_toolkit_present():
    """Where torch is a CUDA build and nvcc exists (CI here), the CUDA kernels must be
    compiled in unless COSPEC_CPU_ONLY was set: a .cu compile error fails this."""
    import os
    import shutil

    if os.environ.get("COSPEC_CPU_ONLY", "0") not in ("", "0"):
        pytest.skip("COSPEC_CPU_ONLY set")
    nvcc = shutil.which("nvcc") or os.path.exists("/usr/local/cuda/bin/nvcc")
    if not (torch.version.cuda and nvcc):
        pytest.skip("no CUDA toolkit or CPU-only torch")
    assert cospec_ext.BUILT_WITH_CUDA
    assert "9.0" in cospec_ext._C.cuda_archs or "90" in cospec_ext._C.cuda_archs
