"""cospec_ext: Collaborative Speculative Decoding (CoSpec) kernels and API.

Importing the package loads the compiled extension, which registers the
`torch.ops.cospec.*` ops (CPU always, CUDA when built with it).
"""

import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # noqa: F401  (registers torch.ops.cospec.*)
from . import ops, reference
from .ops import LogitStats, VerifyOutput, arbiter_score, kv_rollback, logit_stats, verify_tree
from .engine import DecodeOutput, TreeSpec, decode
from .engine import Arbiter

__version__ = "0.1.0"
BUILT_WITH_CUDA: bool = bool(_C.with_cuda)

__all__ = [
    "ops",
    "reference",
    "verify_tree",
    "logit_stats",
    "arbiter_score",
    "kv_rollback",
    "VerifyOutput",
    "LogitStats",
    "BUILT_WITH_CUDA",
    "decode",
    "DecodeOutput",
    "TreeSpec",
    "Arbiter",
]
