"""Preallocated KV caches addressed by slot, and the tree attention masks over them.

Layout: per device the model's layers live on, one tensor `[2, L_part, B, H, S, D]` (K and
V of those layers; a model on one device has one part, `data`), so one `kv_rollback`
launch per device compacts a whole model. A model spread over devices (transformers'
`device_map`) keeps each layer's K/V on that layer's device. Row b's token at position s
of the left-padded sequence lives at slot s; a draft tree's node i lives at
`root_slot[b] + i`. Rows are dropped from the batch by compacting them to the front
(`keep_rows`), so the active batch is always the first `batch` rows.
"""

from __future__ import annotations

import torch


class KVCache:
    """K and V of every layer of one model in the model's dtype: `parts`, one tensor
    [2, L_part, rows, H, S, D] per run of consecutive layers on one device; `data` is the
    only part of a one-device model (None when spread over devices).

    layer_devices: the device of each layer (None: all on `device`); rows >= batch: rows
    allocated (static-shape forwards pad the batch into the spare ones).
    """

    def __init__(self, num_layers: int, batch: int, num_kv_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device, rows: int | None = None,
                 layer_devices: list[torch.device] | None = None):
        rows = batch if rows is None else rows
        devs = [torch.device(d) for d in layer_devices] if layer_devices else [torch.device(device)] * num_layers
        if len(devs) != num_layers:
            raise ValueError(f"`layer_devices` has {len(devs)} entries for {num_layers} layers")
        runs: list[list] = []  # [first layer, count, device]
        for l, d in enumerate(devs):
            if runs and runs[-1][2] == d:
                runs[-1][1] += 1
            else:
                runs.append([l, 1, d])
        self.parts = [torch.zeros(2, n, rows, num_kv_heads, max_len, head_dim, dtype=dtype, device=d)
                      for _, n, d in runs]
        self.data = self.parts[0] if len(self.parts) == 1 else None
        # per layer: (K, V) views [rows, H, S, D] into its part, on the layer's device
        self.layer_kv = [(p[0, i], p[1, i]) for p in self.parts for i in range(p.shape[1])]
        self.max_len = max_len
        self.device = torch.device(device)
        self.row_ids = torch.arange(rows, device=device)[:, None]  # [B, 1], for per-row slot writes
        self.slot_ids = torch.arange(max_len, device=device)  # [S]
        self._set_batch(batch)

    @classmethod
    def prefix_of(cls, owner: "KVCache", layers: int) -> "KVCache":
        """A cache over the first `layers` layers of a one-device `owner` (views, no copy), for a
        self-draft (engine/selfdraft.py): its rollback and row compaction are the owner's (they
        move these layers), so here they only follow the owner's batch."""
        if owner.data is None:
            raise ValueError("a prefix view needs a cache on one device")
        c = cls.__new__(cls)
        c.parts = [owner.data[:, :layers]]  # [2, layers, rows, H, S, D], strided like the owner
        c.data = c.parts[0]
        c.layer_kv = owner.layer_kv[:layers]
        c.max_len, c.device, c.row_ids, c.slot_ids = owner.max_len, owner.device, owner.row_ids, owner.slot_ids
        c.owner = owner
        c._set_batch(owner.batch)
        return c

    owner: "KVCache | None" = None  # set on a prefix view: the cache whose layers these are

    def active(self) -> torch.Tensor:
        """[2, L, B_active, H, S, D] view of the rows still decoding (a one-device cache)."""
        if self.data is None:
            raise RuntimeError("this cache is spread over devices: use `parts`")
        return self.active_data

    def rollback(self, root_slot: torch.Tensor, path: torch.Tensor) -> None:
        """Moves the accepted path's K/V to the slots right after `root_slot - 1` (in place),
        one `kv_rollback` per device.

        root_slot: int64 [B] slot of tree node 0; path: int64 [B, N] node ids, -1 padded.
        """
        if self.owner is not None:  # the owner's rollback moves these layers
            return
        for p in self.active_parts:  # the engine's own tensors: the kernel without the wrapper's checks
            if p.device != root_slot.device:  # a model spread over devices (a copy to the CPU must block)
                nb = p.device.type == "cuda"
                root_slot, path = root_slot.to(p.device, non_blocking=nb), path.to(p.device, non_blocking=nb)
            torch.ops.cospec.kv_rollback(p, root_slot, path)

    def keep_rows(self, keep: list[int], upto: int) -> None:
        """Compacts rows `keep` (increasing) to the front; only slots [0, upto) are moved (by the
        owner, for a prefix view)."""
        for j, src in enumerate(keep if self.owner is None else ()):  # once per finished row, not per step
            if src != j:
                for p in self.parts:
                    p[:, :, j, :, :upto].copy_(p[:, :, src, :, :upto])
        self._set_batch(len(keep))

    def _set_batch(self, batch: int) -> None:
        """The active rows, and per layer their (K, V) views [batch, H, S, D], made once per
        batch change instead of sliced in every forward's every layer."""
        self.batch = batch
        self.active_parts = [p[:, :, :batch] for p in self.parts]  # [2, L_part, batch, H, S, D]
        self.active_data = self.active_parts[0] if self.data is not None else None
        self.active_rows = self.row_ids[:batch]  # [batch, 1]
        self.active_kv = [(k[:batch], v[:batch]) for k, v in self.layer_kv]


class KVView:
    """What one model forward sees: it writes the new K/V of its n input tokens at per-row
    slots and attends over slots [0, s_used).

    Either `uniform_start` (host int), when every row writes the contiguous range
    [start, start + n) (a plain slice copy), or `slots`, int64 [B, n], the destination slot
    of each input token.
    """

    def __init__(self, cache: KVCache, s_used: int, uniform_start: int | None = None,
                 slots: torch.Tensor | None = None):
        if (uniform_start is None) == (slots is None):
            raise ValueError("KVView takes exactly one of `uniform_start` and `slots`")
        self.cache = cache
        self.data = cache.active_data  # [2, L, B, H, S, D] (None when spread over devices)
        self.slots = slots  # [B, n]
        self.s_used = s_used
        self.uniform_start = uniform_start
        self.rows = cache.active_rows  # [B, 1]
        self.num_layers = len(cache.layer_kv)
        self._index: dict = {}  # device -> (rows, slots) there (a model spread over devices)

    def slot_tensor(self, n: int) -> torch.Tensor:
        """int64 [B, n]: the destination slot of each of the forward's n input tokens."""
        if self.slots is not None:
            return self.slots
        s0, B = self.uniform_start, self.rows.shape[0]
        t = self.cache.slot_ids[s0 : s0 + n][None]  # [1, n], a view (s0 + n <= S)
        return t if B == 1 else t.expand(B, n)

    def update(self, layer_idx: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """key, value: [B, H, n, D] -> the layer's keys and values over slots [0, s_used), [B, H, s_used, D]
        (on the layer's device)."""
        k_all, v_all = self.cache.active_kv[layer_idx]  # [B, H, S, D]
        n = key.shape[2]
        if self.uniform_start is not None:
            s0 = self.uniform_start
            k_all[:, :, s0 : s0 + n].copy_(key)
            v_all[:, :, s0 : s0 + n].copy_(value)
        else:
            rows, slots = self.rows, self.slots
            if k_all.device != rows.device:
                if k_all.device not in self._index:
                    self._index[k_all.device] = (rows.to(k_all.device), slots.to(k_all.device))
                rows, slots = self._index[k_all.device]
            k_all.transpose(1, 2)[rows, slots] = key.transpose(1, 2).to(k_all.dtype)
            v_all.transpose(1, 2)[rows, slots] = value.transpose(1, 2).to(v_all.dtype)
        return k_all[:, :, : self.s_used], v_all[:, :, : self.s_used]


class MaskBuilder:
    """Builds boolean attention masks [B, 1, n_query, s_used] (True = attend) into one
    preallocated buffer, so no step allocates a mask of the cache's size.

    A query of tree node q attends to the committed prefix, slots [pad[b], root_slot[b]),
    and to the slots of its ancestors-or-self, `root_slot[b] + j` for `anc[b, q, j]`.
    """

    def __init__(self, batch: int, max_query: int, max_len: int, device: torch.device):
        self.buf = torch.zeros(batch, 1, max_query, max_len, dtype=torch.bool, device=device)
        self.max_len = max_len
        self._full: dict[int, torch.Tensor] = {}  # nq -> bool [batch, 1, nq, S], contiguous

    def _buffer(self, B: int, nq: int, s_used: int) -> torch.Tensor:
        """The mask's storage [B, 1, nq, s_used]: over every slot (static-shape forwards, which
        attend over the whole cache), a contiguous buffer of its own per query count, so the
        forward takes it as it is; else a view of the shared buffer."""
        if s_used < self.max_len:
            return self.buf[:B, :, :nq, :s_used]
        full = self._full.get(nq)
        if full is None:
            full = self._full[nq] = torch.zeros(self.buf.shape[0], 1, nq, self.max_len, dtype=torch.bool,
                                                device=self.buf.device)
        return full[:B]

    def tree(self, pad: torch.Tensor, root_slot: torch.Tensor, anc: torch.Tensor, s_used: int) -> torch.Tensor:
        """pad, root_slot: int64 [B]; anc: bool [B or 1, nq, n] ancestor-or-self rows of the
        queries over the tree's first n nodes (root_slot + n <= s_used) -> bool view
        [B, 1, nq, s_used] (valid until the next call with the same nq), written by one
        `tree_mask` kernel (the engine's own tensors: without the wrapper's checks)."""
        B, nq = root_slot.shape[0], anc.shape[1]
        m = self._buffer(B, nq, s_used)
        torch.ops.cospec.tree_mask(m, pad, root_slot, anc)
        return m


def prefill_mask(pad: torch.Tensor, length: int) -> torch.Tensor:
    """Causal mask over a left-padded prompt, bool [B, 1, P, P]: query q attends to key s
    when pad[b] <= s <= q; a padding query attends to itself only (keeps its K/V finite)."""
    s = torch.arange(length, device=pad.device)
    causal = s[None, :] <= s[:, None]  # [P(q), P(s)]
    real_key = s[None, :] >= pad[:, None]  # [B, P(s)]
    m = causal[None] & real_key[:, None, :]
    m |= torch.eye(length, dtype=torch.bool, device=pad.device)[None]
    return m[:, None]
