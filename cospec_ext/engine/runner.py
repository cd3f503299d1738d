"""One model with its preallocated cache: prefill and forwards over tree nodes at per-row slots."""

from __future__ import annotations

import time

import torch

from .adapter import ModelAdapter
from .kv import KVCache, KVView, MaskBuilder, prefill_mask


class ModelRunner:
    """Owns a model's KVCache and mask buffer; counts and times its forwards.

    pad: int64 [B] left-padding length of each active row (slots [0, pad) are never attended);
    cache: use this cache (a self-draft's view of the target's) instead of allocating one.
    """

    def __init__(self, adapter: ModelAdapter, batch: int, max_len: int, max_query: int, pad: torch.Tensor,
                 time_forwards: bool = False, cache: KVCache | None = None):
        self.adapter = adapter
        self.static = bool(getattr(adapter, "static_shapes", False))
        rows = None
        if cache is not None:  # a self-draft's view of the target's cache (engine/selfdraft.py)
            self.cache, max_len = cache, cache.max_len
        else:
            if self.static:
                # static-shape forwards (engine/native.py): rows a power of two and S on a ladder
                # with a floor, so calls with other batch sizes and prompt lengths meet the same graphs
                rows = 1 << (batch - 1).bit_length()
                fit = getattr(adapter, "cache_length", None)
                max_len = fit(max_len, rows) if fit is not None else -(-max_len // 128) * 128
            self.cache = KVCache(adapter.num_layers, batch, adapter.num_kv_heads, max_len, adapter.head_dim,
                                 adapter.dtype, adapter.device, rows=rows,
                                 layer_devices=getattr(adapter, "layer_devices", None))
        self.masks = MaskBuilder(batch, max_query, max_len, adapter.device)
        self.pad = pad
        self.node_ids = torch.arange(max(max_query, 1), device=adapter.device)  # [n]
        self.forwards = 0
        self.seconds = 0.0  # time inside forwards (synchronised on CUDA when time_forwards)
        self._sync = time_forwards and adapter.device.type == "cuda"
        self.want_hidden = False  # keep the last forward's hidden states (arbiters that read them)
        self.last_hidden: torch.Tensor | None = None  # [B, n, hidden_size]
        self._root: tuple | None = None  # forward_nodes' per-root values, keyed by its tensors

    def _timed(self, call, forwards: int = 1):
        """call() timed into `seconds` (less any graph it compiled: the adapter's compile_seconds)
        and counted as `forwards` forwards."""
        if self._sync:
            torch.cuda.synchronize(self.adapter.device)
        t0 = time.perf_counter()
        c0 = getattr(self.adapter, "compile_seconds", 0.0)
        out = call()
        if self._sync:
            torch.cuda.synchronize(self.adapter.device)
        self.seconds += time.perf_counter() - t0 - (getattr(self.adapter, "compile_seconds", 0.0) - c0)
        self.forwards += forwards
        return out

    def _run(self, *args, **kw) -> torch.Tensor:
        if self.want_hidden:
            out, self.last_hidden = self._timed(lambda: self.adapter.forward(*args, return_hidden=True, **kw))
            return out
        return self._timed(lambda: self.adapter.forward(*args, **kw))

    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids int64 [B, P] (left-padded) into slots [0, P) -> last-position logits [B, V]."""
        P = input_ids.shape[1]
        positions = (torch.arange(P, device=input_ids.device)[None, :] - self.pad[:, None]).clamp(min=0)
        kv = KVView(self.cache, P, uniform_start=0)
        logits = self._run(input_ids, positions, prefill_mask(self.pad, P), kv, logits_to_keep=1)
        return logits[:, -1]

    def forward_nodes(self, tokens: torch.Tensor, root_slot: torch.Tensor, root_slot_host: torch.Tensor, node_lo: int,
                      anc: torch.Tensor, depth) -> torch.Tensor:
        """Runs tree nodes [node_lo, node_lo + n) of every row.

        tokens: int64 [B, n]; root_slot: int64 [B] slot of node 0 (node j sits at root_slot + j),
        root_slot_host its CPU copy;
        anc: bool [B or 1, n, node_lo + n], ancestor-or-self rows of these nodes;
        depth: int or int64 [B, n], depth of each node (position = root_slot - pad + depth).
        Returns logits [B, n, V].
        """
        B, n = tokens.shape
        first_pos, s_max, same_root = self._root_facts(root_slot, root_slot_host)
        positions = first_pos + depth  # [B, n] or broadcast
        if not torch.is_tensor(depth) or depth.dim() == 0:
            positions = positions.expand(B, n)
        s_used = s_max + node_lo + n
        uniform = s_max + node_lo if same_root else None
        # static-shape forwards attend over every slot: their mask is built that wide
        mask = self.masks.tree(self.pad, root_slot, anc, self.cache.max_len if self.static else s_used)
        if uniform is not None:
            kv = KVView(self.cache, s_used, uniform_start=uniform)
        else:
            kv = KVView(self.cache, s_used, slots=root_slot[:, None] + self.node_ids[node_lo : node_lo + n])  # [B, n]
        return self._run(tokens, positions, mask, kv)

    def forward_prefix_nodes(self, prefix: torch.Tensor, tokens: torch.Tensor, root_slot: torch.Tensor,
                             root_slot_host: torch.Tensor, anc: torch.Tensor, depth) -> torch.Tensor:
        """A deferred prefill and a round's tree in one forward: prefix int64 [B, p] (left-padded
        prompt tokens for slots [0, p), not yet in the cache) then tree nodes 0..n-1 (tokens
        [B, n]) at root_slot = p for every row; anc, depth as forward_nodes. The prefix attends
        causally (prefill_mask), node q to the prefix and its ancestors-or-self. Counts one
        forward. Returns the nodes' logits [B, n, V]."""
        B, p = prefix.shape
        n = tokens.shape[1]
        first_pos, _, _ = self._root_facts(root_slot, root_slot_host)
        positions = torch.cat([(self.node_ids[:p][None, :] - self.pad[:, None]).clamp(min=0),
                               (first_pos + depth).expand(B, n)], dim=1)  # [B, p + n]
        pre = prefill_mask(self.pad, p)  # [B, 1, p, p]
        mask = torch.cat([torch.nn.functional.pad(pre, (0, n)), self.masks.tree(self.pad, root_slot, anc, p + n)],
                         dim=2)  # [B, 1, p + n, p + n]
        kv = KVView(self.cache, p + n, uniform_start=0)
        return self._run(torch.cat([prefix, tokens], dim=1), positions, mask, kv, logits_to_keep=n)

    @property
    def chains(self) -> bool:
        """Whether the adapter runs a greedy chain of one-token forwards in one call over this
        runner's cache (NativeAdapter.chains, forward_chain)."""
        ok = getattr(self.adapter, "chains", None)
        data = self.cache.data  # [2, L, rows, H, S, D] or None (spread over devices)
        return callable(ok) and data is not None and ok(self.cache.batch, data.shape[2])

    def _root_facts(self, root_slot: torch.Tensor, root_slot_host: torch.Tensor) -> tuple:
        """(the root's position int64 [B, 1], the largest root slot, whether every row's root
        sits at the same slot): what depends on the root only, made once for the forwards of a
        round (keyed by the same tensors)."""
        r = self._root
        if r is None or r[0] is not root_slot or r[1] is not root_slot_host or r[2] is not self.pad:
            h = root_slot_host.tolist()
            r = self._root = (root_slot, root_slot_host, self.pad, (root_slot - self.pad)[:, None], max(h),
                              min(h) == max(h))
        return r[3:]

    def forward_chain(self, tokens: torch.Tensor, root_slot: torch.Tensor, root_slot_host: torch.Tensor,
                      anc: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A greedy chain from node 0 (`NativeAdapter.forward_chain`): tokens int64 [B, 1] at
        root_slot [B] (CPU copy root_slot_host); node i sits at root_slot + i, position
        root_slot - pad + i, and attends its row's prefix and nodes 0..i. anc: bool [1, 1, 1],
        node 0's ancestor-or-self row (as forward_nodes). Counts `steps` forwards;
        `last_hidden` gets the hidden states [B, steps, H].
        Returns (argmaxes int64 [B, steps], logits [B, steps, V])."""
        first_pos, s_max, same_root = self._root_facts(root_slot, root_slot_host)
        mask = self.masks.tree(self.pad, root_slot, anc, self.cache.max_len)
        if same_root:
            kv = KVView(self.cache, s_max + 1, uniform_start=s_max)
        else:
            kv = KVView(self.cache, s_max + 1, slots=root_slot[:, None])  # [B, 1]
        toks, logits, hid = self._timed(lambda: self.adapter.forward_chain(tokens, first_pos, mask, kv, steps), steps)
        self.last_hidden = hid if self.want_hidden else None
        return toks, logits

    def keep_rows(self, keep: list[int], upto: int) -> None:
        self.cache.keep_rows(keep, upto)
