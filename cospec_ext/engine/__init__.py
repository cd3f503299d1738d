"""The decoding engine behind `cospec_ext.decode` (see decode.py), with the arbiter it consults
(arbiter.py: the learned MLP; features.py: its inputs and the `ArbiterLike` interface)."""

from .adapter import HFAdapter, ModelAdapter, SlotCache
from .arbiter import Arbiter
from .decode import MODES, DecodeOutput, DecodeStats, DecodeTrace, decode
from .features import FEATURE_NAMES, ArbiterLike, ConstantArbiter, LogisticArbiter
from .kv import KVCache, KVView
from .tree import TreeSpec, parse_tree

__all__ = ["decode", "DecodeOutput", "DecodeStats", "DecodeTrace", "MODES", "TreeSpec", "parse_tree",
           "ModelAdapter", "HFAdapter", "SlotCache", "KVCache", "KVView", "FEATURE_NAMES", "ArbiterLike",
           "ConstantArbiter", "LogisticArbiter", "Arbiter"]
