"""Drafting: the draft model proposes a tree of candidate tokens each round.

The draft keeps its own cache: every committed token up to `dlen` is in it. A round
first feeds the committed tokens the draft has not seen (`catch_up`: the root, plus the
deepest accepted node of the last round or whatever accumulated while drafting was off),
then expands the tree level by level, one forward per level with a tree mask, so level
d's logits propose level d+1. The deepest level is never fed to the draft; after
verification `commit` compacts the accepted path in the draft cache with kv_rollback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import ops
from .runner import ModelRunner
from .tree import TreeSpec, static_tables


@dataclass
class Draft:
    """A drafted tree of N nodes per row (node 0 = the root), in the tree convention."""

    candidates: torch.Tensor  # int64 [B, N]
    parents: torch.Tensor  # int64 [B or 1, N]
    depth: torch.Tensor  # int64 [B or 1, N]
    anc: torch.Tensor  # bool [B or 1, N, N]: anc[b, i, j] = j is i or an ancestor of i
    rank: torch.Tensor  # int64 [B or 1, N]: rank among siblings (0 = the draft's first choice)
    orig: torch.Tensor | None  # int64 [B, N]: index in the draft's expanded tree (None: identity)
    n_expanded: int  # nodes the draft expanded (its cache holds those above the deepest level)
    levels: int  # depth of the deepest level
    stats: dict | None = None  # the draft at each node's parent (arbiter features): d_parent_logits
    #   [B, N, V] and, when its hidden states are kept, d_parent_hidden [B, N, H]
    fed: int | None = None  # depth of the deepest level in the draft's cache (None: levels - 1)

    @property
    def fed_levels(self) -> int:
        return self.levels - 1 if self.fed is None else self.fed


class Drafter:
    """Proposes trees with the draft model per `TreeSpec`; owns the draft's cache bookkeeping."""

    def __init__(self, runner: ModelRunner, spec: TreeSpec):
        self.runner, self.spec = runner, spec
        dev = runner.adapter.device
        self.static = static_tables(spec.static_parents, dev) if spec.static_parents is not None else None
        self.log_conf = math.log(spec.min_confidence) if spec.min_confidence > 0 else None
        self.root_slot: torch.Tensor | None = None  # [B] draft slot of this round's root
        self.root_slot_host: torch.Tensor | None = None  # its CPU copy
        self.root_hidden: torch.Tensor | None = None  # [B, H] draft hidden state at the root
        w = runner.node_ids.shape[0]
        self.chain = torch.ones(w, w, dtype=torch.bool, device=dev).tril_()  # catch-up chunks' mask
        self._chains: dict[int, torch.Tensor] = {}  # k -> chain[None, :k, :k]

    def _chain(self, k: int) -> torch.Tensor:
        """bool [1, k, k], lower triangular: the mask rows of a k-token catch-up (a view, made once)."""
        c = self._chains.get(k)
        if c is None:
            c = self._chains[k] = self.chain[None, :k, :k]
        return c

    # -- catch-up -----------------------------------------------------------------------
    def catch_up(self, seq: torch.Tensor, dlen: torch.Tensor, dlen_host: torch.Tensor, total: torch.Tensor,
                 total_host: torch.Tensor, root: torch.Tensor | None = None, root_slot: torch.Tensor | None = None,
                 root_slot_host: torch.Tensor | None = None) -> torch.Tensor:
        """Feeds seq[b, dlen[b]:total[b]] to the draft (ragged; at least the root, seq[b, total[b] - 1],
        which the caller may pass as int64 [B]; in chunks of at most the mask buffer's width) and
        returns the draft's logits after the root, [B, V].
        Afterwards the draft cache holds total[b] tokens. root_slot, root_slot_host: total - 1 and
        its CPU copy when the caller has them (the tree's forwards then reuse the same tensors).

        A chunk of P positions writes slots dlen[b] + j for every row, also past a row's last
        token (padding, on scratch slots above it), so P also stays within the cache's last
        slot but one (the spare slot no mask opens); a row caught up in an earlier chunk keeps
        the root logits it got there."""
        B = seq.shape[0]
        width = self.runner.node_ids.shape[0]
        room = self.runner.cache.max_len - 1  # slots [0, room) may be written
        if root_slot is None:
            root_slot, root_slot_host = total - 1, total_host - 1
        dl, tl = dlen_host.tolist(), total_host.tolist()
        k = tl[0] - dl[0]
        if all(t - d == k for t, d in zip(tl, dl)) and 1 <= k <= width and max(dl) + k <= room:
            # every row feeds the same k tokens (the usual round: k = 1, the root alone; k = 2
            # after a round that accepted every level): one forward, without the chunk loop
            if k == 1:  # node 0 sits at dlen = total - 1
                toks = seq.gather(1, root_slot[:, None]) if root is None else root[:, None]  # [B, 1]
                logits = self.runner.forward_nodes(toks, root_slot, root_slot_host, 0, self._chain(1), 0)
            else:
                ar = self.runner.node_ids[:k]
                toks = seq.gather(1, dlen[:, None] + ar)  # [B, k]
                logits = self.runner.forward_nodes(toks, dlen, dlen_host, 0, self._chain(k), ar[None, :])
            self.root_slot, self.root_slot_host = root_slot, root_slot_host
            self.root_hidden = self.runner.last_hidden[:, k - 1] if self.runner.want_hidden else None
            return logits[:, k - 1]  # [B, V]
        root_logits = root_hidden = None
        while True:
            P = min(int((total_host - dlen_host).max()), width, room - int(dlen_host.max()))
            ar = self.runner.node_ids[:P]
            idx = torch.minimum(dlen[:, None] + ar, total[:, None] - 1)  # [B, P], padded with the root
            anc = self._chain(P)
            logits = self.runner.forward_nodes(seq.gather(1, idx), dlen, dlen_host, 0, anc, ar[None, :])  # [B, P, V]
            need = total - dlen  # [B] tokens still to feed (0: caught up in an earlier chunk)
            last = (need - 1).clamp(min=0, max=P - 1)  # [B]
            here = logits.gather(1, last[:, None, None].expand(B, 1, logits.shape[-1]))[:, 0]  # [B, V]
            done = (need >= 1) & (need <= P)  # rows whose root was in this chunk
            root_logits = here if root_logits is None else torch.where(done[:, None], here, root_logits)
            if self.runner.want_hidden:
                h = self.runner.last_hidden
                here_h = h.gather(1, last[:, None, None].expand(B, 1, h.shape[-1]))[:, 0]  # [B, H]
                root_hidden = here_h if root_hidden is None else torch.where(done[:, None], here_h, root_hidden)
            dlen = torch.minimum(dlen + P, total)
            dlen_host = torch.minimum(dlen_host + P, total_host)
            if torch.equal(dlen_host, total_host):
                break
        self.root_slot, self.root_slot_host = root_slot, root_slot_host
        self.root_hidden = root_hidden
        return root_logits

    # -- a greedy chain in one call ------------------------------------------------------
    def chain_round(self, dlen_host: torch.Tensor, total_host: torch.Tensor, root: torch.Tensor,
                    root_slot: torch.Tensor, root_slot_host: torch.Tensor, depth: int, want_stats: bool) -> Draft | None:
        """The round's catch-up and a chain of `depth` levels as one call of the runner's
        `forward_chain` (depth + 1 forwards: the root, then each level fed the argmax of the
        one above, the deepest level included, so after a round that accepts every level only
        the new root is left to feed). None (the caller runs catch_up and draft) unless the tree
        is a static chain without the confidence stop drafted to its full depth, the runner
        chains, and every row has only the root to feed.
        Equals catch_up + _draft_chain token for token (the same forward per node)."""
        st = self.static
        if (st is None or st.kmax != 1 or self.log_conf is not None or depth != self.spec.depth
                or not self.runner.chains):
            return None
        if not torch.equal(total_host - dlen_host, torch.ones_like(total_host)):
            return None
        if int(root_slot_host.max()) + depth >= self.runner.cache.max_len - 1:  # the spare slot stays unwritten
            return None
        toks, logits = self.runner.forward_chain(root[:, None], root_slot, root_slot_host, self._chain(1), depth + 1)
        hid = self.runner.last_hidden  # [B, depth + 1, H] or None
        self.root_slot, self.root_slot_host = root_slot, root_slot_host
        self.root_hidden = hid[:, 0] if hid is not None else None
        rec = _Recorder(want_stats, logits[:, 0], self.root_hidden)
        for d in range(1, depth):
            rec.level_out(logits[:, d : d + 1], hid[:, d : d + 1] if hid is not None else None)
        cand = torch.cat([root[:, None], toks[:, :depth]], dim=1)  # [B, depth + 1]
        out = self._static_draft(cand, depth, rec, want_stats)
        out.fed = depth
        return out

    # -- tree expansion -----------------------------------------------------------------
    def _stop(self, scores: torch.Tensor) -> bool:
        """Confidence stop (one host sync): every row's best path log-probability is below the bound."""
        return float(scores.max()) < self.log_conf

    def draft(self, depth: int, root: torch.Tensor, root_logits: torch.Tensor, want_stats: bool) -> Draft:
        """Expands up to `depth` levels below `root` (int64 [B]) from the draft's root logits [B, V];
        want_stats: also gather the draft's statistics at each node's parent (arbiter features)."""
        if self.static is not None:
            return self._draft_static(depth, root, root_logits, want_stats)
        return self._draft_dynamic(depth, root, root_logits, want_stats)

    def _draft_static(self, depth, root, root_logits, want_stats) -> Draft:
        st, B, dev = self.static, root.shape[0], root.device
        conf = self.log_conf is not None
        if st.kmax == 1 and not conf:
            return self._draft_chain(depth, root, root_logits, want_stats)
        n_all = st.levels[depth][1]
        cand = torch.empty(B, n_all, dtype=torch.int64, device=dev)
        cand[:, 0] = root
        # log p_draft(candidate | parent) and the path log-probability, for the confidence stop
        logp_cand = torch.zeros(B, n_all, device=dev) if conf else None
        score = torch.zeros(B, n_all, device=dev) if conf else None
        rec = _Recorder(want_stats, root_logits, self.root_hidden)
        logits, last = root_logits[:, None], 0  # [B, 1, V]: level 0
        for d in range(1, depth + 1):
            (plo, phi), (lo, hi) = st.levels[d - 1], st.levels[d]
            par = st.local_parents[d]  # [n] index of each node's parent in the previous level
            ls = ops.logit_stats_unchecked(logits) if st.kmax == 1 or conf else None  # (top-k trees: unused)
            if st.kmax == 1:
                cand[:, lo:hi] = ls.argmax[:, par]
            else:
                topv, topi = logits.topk(st.kmax, dim=-1)  # [B, n_prev, k]
                cand[:, lo:hi] = topi[:, par, st.rank[lo:hi]]
            if conf:  # the candidate's logit, less the parent row's logsumexp
                val = ls.max_logit[:, par] if st.kmax == 1 else topv[:, par, st.rank[lo:hi]].float()
                logp_cand[:, lo:hi] = val - ls.logsumexp[:, par]
                score[:, lo:hi] = score[:, st.parents[lo:hi]] + logp_cand[:, lo:hi]
            last = d
            if d == depth or (conf and self._stop(score[:, lo:hi])):
                break
            logits = self.runner.forward_nodes(cand[:, lo:hi], self.root_slot, self.root_slot_host, lo,
                                               st.level_anc[d], d)
            rec.level_out(logits, self.runner.last_hidden)
        return self._static_draft(cand[:, :st.levels[last][1]], last, rec, want_stats)

    def _draft_chain(self, depth, root, root_logits, want_stats) -> Draft:
        """A chain (one node per level, no confidence stop): level d's token is the argmax (ties:
        lowest id) of the draft's logits at level d - 1; the tokens are concatenated once."""
        st = self.static
        rec = _Recorder(want_stats, root_logits, self.root_hidden)
        toks = [root[:, None], root_logits.argmax(-1, keepdim=True)]  # [B, 1] each
        for d in range(1, depth):
            logits = self.runner.forward_nodes(toks[d], self.root_slot, self.root_slot_host, d, st.level_anc[d], d)
            rec.level_out(logits, self.runner.last_hidden)
            toks.append(logits.argmax(-1))  # [B, 1, V] -> [B, 1]
        return self._static_draft(torch.cat(toks, dim=1), depth, rec, want_stats)  # candidates [B, depth + 1]

    def _static_draft(self, cand: torch.Tensor, last: int, rec: "_Recorder", want_stats: bool) -> Draft:
        """The Draft of a static tree's first n = cand.shape[1] nodes (levels 0..last)."""
        B, n = cand.shape
        stats = None
        if want_stats:  # gathered only if the arbiter reads them
            par = self.static.parents[None, :n].clamp(min=0)
            stats = _LazyStats(lambda: rec.at_parents(par, B))
        parents, dep, anc, rank = self.static.prefix(n)
        return Draft(cand, parents, dep, anc, rank, None, n, last, stats)

    def _draft_dynamic(self, depth, root, root_logits, want_stats) -> Draft:
        K, B, dev = self.spec.topk, root.shape[0], root.device
        E = 1 + depth * K
        cand = torch.empty(B, E, dtype=torch.int64, device=dev)
        cand[:, 0] = root
        parents = torch.full((B, E), -1, dtype=torch.int64, device=dev)
        rank = torch.zeros(B, E, dtype=torch.int64, device=dev)
        dep = torch.zeros(E, dtype=torch.int64, device=dev)
        score = torch.zeros(B, E, device=dev)  # path log-probability: ranks the frontier
        anc = torch.zeros(B, E, E, dtype=torch.bool, device=dev)
        anc[:, 0, 0] = True
        rec = _Recorder(want_stats, root_logits, self.root_hidden)
        logits, plo, last = root_logits[:, None], 0, 0
        for d in range(1, depth + 1):
            n_prev = logits.shape[1]
            ls = ops.logit_stats_unchecked(logits)
            topv, topi = logits.topk(K, dim=-1)  # [B, n_prev, K]
            lp = (topv.float() - ls.logsumexp[..., None]).flatten(1)  # [B, n_prev * K]
            s = (score[:, plo : plo + n_prev, None] + lp.view(B, n_prev, K)).flatten(1)  # [B, n_prev * K]
            best = s.topk(K, dim=-1).indices.sort(dim=-1).values  # [B, K], parent-major, rank-minor
            lo, hi = 1 + (d - 1) * K, 1 + d * K
            par = plo + best // K
            cand[:, lo:hi] = topi.flatten(1).gather(1, best)
            parents[:, lo:hi], rank[:, lo:hi], dep[lo:hi] = par, best % K, d
            score[:, lo:hi] = s.gather(1, best)
            anc[:, lo:hi] = anc.gather(1, par[..., None].expand(B, K, E))
            diag = self.runner.node_ids[lo:hi]
            anc[:, diag, diag] = True
            last, plo = d, lo
            if d == depth or (self.log_conf is not None and self._stop(score[:, lo:hi])):
                break
            logits = self.runner.forward_nodes(cand[:, lo:hi], self.root_slot, self.root_slot_host, lo,
                                               anc[:, lo:hi, :hi], d)
            rec.level_out(logits, self.runner.last_hidden)
        E = 1 + last * K
        budget = min(self.spec.budget or depth * K, E - 1)
        stats = rec.at_parents(parents[:, :E].clamp(min=0), B) if want_stats else None
        if budget == E - 1:
            return Draft(cand[:, :E], parents[:, :E], dep[None, :E], anc[:, :E, :E], rank[:, :E], None, E, last,
                         stats)
        # Keep the `budget` best nodes by path probability; a child scores below its parent
        # (ties broken toward shallower nodes), so the kept set is closed under ancestors.
        key = score[:, 1:E] - 1e-4 * dep[1:E]
        sel = torch.cat([torch.zeros(B, 1, dtype=torch.int64, device=dev),
                         1 + key.topk(budget, dim=-1).indices.sort(dim=-1).values], dim=1)  # [B, M+1]
        new_id = torch.full((B, E), -1, dtype=torch.int64, device=dev)
        new_id.scatter_(1, sel, torch.arange(budget + 1, device=dev).expand(B, budget + 1))
        par_sel = parents.gather(1, sel)
        new_par = new_id.gather(1, par_sel.clamp(min=0)).masked_fill_(par_sel < 0, -1)
        anc_sel = anc.gather(1, sel[..., None].expand(B, budget + 1, anc.shape[2]))
        anc_sel = anc_sel.gather(2, sel[:, None, :].expand(B, budget + 1, budget + 1))
        if stats is not None:
            stats = {k: v.gather(1, sel if v.dim() == 2 else sel[..., None].expand(B, budget + 1, v.shape[-1]))
                     for k, v in stats.items()}
        return Draft(cand.gather(1, sel), new_par, dep[sel], anc_sel, rank.gather(1, sel), sel, E, last, stats)

    # -- after verification -----------------------------------------------------------------
    def commit(self, d: Draft, path: torch.Tensor, accept_len: torch.Tensor) -> torch.Tensor:
        """Compacts the accepted path in the draft cache; returns the new draft length [B]
        (the accepted nodes the draft has processed: those above the deepest level)."""
        if d.orig is not None:
            B = path.shape[0]
            full = torch.full((B, d.n_expanded), -1, dtype=torch.int64, device=path.device)
            full[:, : path.shape[1]] = torch.where(path >= 0, d.orig.gather(1, path.clamp(min=0)), path)
            path = full
        self.runner.cache.rollback(self.root_slot, path)
        return self.root_slot + torch.clamp(accept_len + 1, max=d.fed_levels + 1)


class _LazyStats(dict):
    """The draft statistics as a dict filled on first read: a round whose drafted tokens all
    match the target's never consults the arbiter, so it never gathers them."""

    def __init__(self, fill):
        super().__init__()
        self._fill = fill

    def __getitem__(self, key):
        if self._fill is not None:
            self.update(self._fill())
            self._fill = None
        return super().__getitem__(key)


class _Recorder:
    """The draft's outputs at every expanded node, kept only when an arbiter reads them: per
    level the logits [B, n, V] and (if the runner keeps them) the last hidden states
    [B, n, H]. Levels are contiguous node ranges, so concatenating them gives rows indexed
    by node."""

    def __init__(self, on: bool, root_logits: torch.Tensor, root_hidden: torch.Tensor | None):
        self.on = on
        self.logits = [root_logits[:, None]]
        self.hidden = [root_hidden[:, None]] if (on and root_hidden is not None) else None

    def level_out(self, logits: torch.Tensor, hidden: torch.Tensor | None) -> None:
        if self.on:
            self.logits.append(logits)
            if self.hidden is not None:
                self.hidden.append(hidden)

    def at_parents(self, parents: torch.Tensor, B: int) -> dict:
        """parents: int64 [B or 1, n] (root clamped to 0) -> the draft's outputs at each node's
        parent: d_parent_logits [B, n, V] and, when recorded, d_parent_hidden [B, n, H]."""
        n = parents.shape[1]
        p = parents.expand(B, n)

        def rows(ts):
            t = torch.cat(ts, dim=1)
            return t.gather(1, p[..., None].expand(B, n, t.shape[-1]))

        out = {"d_parent_logits": rows(self.logits)}
        if self.hidden is not None:
            out["d_parent_hidden"] = rows(self.hidden)
        return out
