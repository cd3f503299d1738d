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
from .tree import StaticTables, TreeSpec


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
    stats: dict | None = None  # draft statistics at each node's parent: float32 [B, N] each, and
    #   d_parent_logits [B, N, V] (the draft's logits at the parent)

    def full(self, name: str) -> torch.Tensor:
        t = getattr(self, name)
        return t.expand(self.candidates.shape[0], *t.shape[1:])


class Drafter:
    """Proposes trees with the draft model per `TreeSpec`; owns the draft's cache bookkeeping."""

    def __init__(self, runner: ModelRunner, spec: TreeSpec):
        self.runner, self.spec = runner, spec
        dev = runner.adapter.device
        self.static = StaticTables(spec.static_parents, dev) if spec.static_parents is not None else None
        self.log_conf = math.log(spec.min_confidence) if spec.min_confidence > 0 else None
        self.root_slot: torch.Tensor | None = None  # [B] draft slot of this round's root
        self.root_slot_host: torch.Tensor | None = None  # its CPU copy
        self.root_hidden: torch.Tensor | None = None  # [B, H] draft hidden state at the root

    # -- catch-up -----------------------------------------------------------------------
    def catch_up(self, seq: torch.Tensor, dlen: torch.Tensor, dlen_host: torch.Tensor, total: torch.Tensor,
                 total_host: torch.Tensor) -> torch.Tensor:
        """Feeds seq[b, dlen[b]:total[b]] to the draft (ragged; at least the root; in chunks of at
        most the mask buffer's width) and returns the draft's logits after the root, [B, V].
        Afterwards the draft cache holds total[b] tokens."""
        B = seq.shape[0]
        width = self.runner.node_ids.shape[0]
        root_logits = root_hidden = None
        while True:
            P = min(int((total_host - dlen_host).max()), width)
            ar = self.runner.node_ids[:P]
            idx = torch.minimum(dlen[:, None] + ar, total[:, None] - 1)  # [B, P], padded with the root
            anc = torch.ones(P, P, dtype=torch.bool, device=seq.device).tril_()[None]  # a chain
            logits = self.runner.forward_nodes(seq.gather(1, idx), dlen, dlen_host, 0, anc, ar[None, :])  # [B, P, V]
            last = (total - 1 - dlen).clamp(max=P - 1)  # [B]
            here = logits.gather(1, last[:, None, None].expand(B, 1, logits.shape[-1]))[:, 0]  # [B, V]
            done = (total - dlen) <= P  # rows whose root was in this chunk
            root_logits = here if root_logits is None else torch.where(done[:, None], here, root_logits)
            if self.runner.want_hidden:
                h = self.runner.last_hidden
                here_h = h.gather(1, last[:, None, None].expand(B, 1, h.shape[-1]))[:, 0]  # [B, H]
                root_hidden = here_h if root_hidden is None else torch.where(done[:, None], here_h, root_hidden)
            dlen = torch.minimum(dlen + P, total)
            dlen_host = torch.minimum(dlen_host + P, total_host)
            if torch.equal(dlen_host, total_host):
                break
        self.root_slot = total - 1
        self.root_slot_host = total_host - 1
        self.root_hidden = root_hidden
        return root_logits

    # -- tree expansion -----------------------------------------------------------------
    def _level_stats(self, logits: torch.Tensor):
        """logits [B, n, V] -> LogitStats of each row and the log-softmax offset."""
        return ops.logit_stats(logits, validate=False)

    def _stop(self, scores: torch.Tensor) -> bool:
        return self.log_conf is not None and float(scores.max()) < self.log_conf

    def draft(self, depth: int, root: torch.Tensor, root_logits: torch.Tensor, want_stats: bool) -> Draft:
        """Expands up to `depth` levels below `root` (int64 [B]) from the draft's root logits [B, V]."""
        if self.static is not None:
            return self._draft_static(depth, root, root_logits, want_stats)
        return self._draft_dynamic(depth, root, root_logits, want_stats)

    def _draft_static(self, depth, root, root_logits, want_stats) -> Draft:
        st, B = self.static, root.shape[0]
        n_all = st.levels[depth][1]
        cand = torch.empty(B, n_all, dtype=torch.int64, device=root.device)
        cand[:, 0] = root
        score = torch.zeros(B, n_all, device=root.device)  # path log-probability under the draft
        node = {k: torch.zeros(B, n_all, device=root.device) for k in ("top", "ent", "margin")}
        logp_cand = torch.zeros(B, n_all, device=root.device)
        logits = root_logits[:, None]  # [B, 1, V]: level 0
        seen = [logits]  # the draft's logits of every expanded level (for the KL feature)
        seen_h = [self.root_hidden[:, None]] if self.runner.want_hidden else None
        last = 0
        for d in range(1, depth + 1):
            (plo, phi), (lo, hi) = st.levels[d - 1], st.levels[d]
            ls = self._level_stats(logits)
            node["top"][:, plo:phi] = ls.max_logit - ls.logsumexp
            node["ent"][:, plo:phi], node["margin"][:, plo:phi] = ls.entropy, ls.margin
            par = st.parents[lo:hi] - plo  # [n] local parent index
            if st.kmax == 1:  # chain: the argmax (ties: lowest id, like torch.argmax)
                tok, val = ls.argmax[:, par], ls.max_logit[:, par]
            else:
                topv, topi = logits.topk(st.kmax, dim=-1)  # [B, n_prev, k]
                tok, val = topi[:, par, st.rank[lo:hi]], topv[:, par, st.rank[lo:hi]].float()
            cand[:, lo:hi] = tok
            logp_cand[:, lo:hi] = val - ls.logsumexp[:, par]
            score[:, lo:hi] = score[:, st.parents[lo:hi]] + logp_cand[:, lo:hi]
            last = d
            if d == depth or self._stop(score[:, lo:hi]):
                break
            logits = self.runner.forward_nodes(cand[:, lo:hi], self.root_slot, self.root_slot_host, lo,
                                               st.anc[None, lo:hi, :hi], d)
            seen.append(logits)
            if seen_h is not None:
                seen_h.append(self.runner.last_hidden)
        n = st.levels[last][1]
        stats = None
        if want_stats:
            p = st.parents[:n].clamp(min=0)
            stats = {"d_logp_cand": logp_cand[:, :n], "d_logp_top": node["top"][:, p],
                     "d_entropy": node["ent"][:, p], "d_margin": node["margin"][:, p],
                     "d_parent_logits": torch.cat(seen, dim=1)[:, p]}  # [B, n, V]
            if seen_h is not None:
                stats["d_parent_hidden"] = torch.cat(seen_h, dim=1)[:, p]  # [B, n, H_draft]
        return Draft(cand[:, :n], st.parents[None, :n], st.depth[None, :n], st.anc[None, :n, :n],
                     st.rank[None, :n], None, n, last, stats)

    def _draft_dynamic(self, depth, root, root_logits, want_stats) -> Draft:
        K, B, dev = self.spec.topk, root.shape[0], root.device
        E = 1 + depth * K
        cand = torch.empty(B, E, dtype=torch.int64, device=dev)
        cand[:, 0] = root
        parents = torch.full((B, E), -1, dtype=torch.int64, device=dev)
        rank = torch.zeros(B, E, dtype=torch.int64, device=dev)
        dep = torch.zeros(E, dtype=torch.int64, device=dev)
        score = torch.zeros(B, E, device=dev)
        logp_cand = torch.zeros(B, E, device=dev)
        node = {k: torch.zeros(B, E, device=dev) for k in ("top", "ent", "margin")}
        anc = torch.zeros(B, E, E, dtype=torch.bool, device=dev)
        anc[:, 0, 0] = True
        logits, plo, last = root_logits[:, None], 0, 0
        seen = [logits]
        seen_h = [self.root_hidden[:, None]] if self.runner.want_hidden else None
        for d in range(1, depth + 1):
            n_prev = logits.shape[1]
            ls = self._level_stats(logits)
            node["top"][:, plo : plo + n_prev] = ls.max_logit - ls.logsumexp
            node["ent"][:, plo : plo + n_prev], node["margin"][:, plo : plo + n_prev] = ls.entropy, ls.margin
            topv, topi = logits.topk(K, dim=-1)  # [B, n_prev, K]
            lp = (topv.float() - ls.logsumexp[..., None]).flatten(1)  # [B, n_prev * K]
            s = (score[:, plo : plo + n_prev, None] + lp.view(B, n_prev, K)).flatten(1)  # [B, n_prev * K]
            best = s.topk(K, dim=-1).indices.sort(dim=-1).values  # [B, K], parent-major, rank-minor
            lo, hi = 1 + (d - 1) * K, 1 + d * K
            par = plo + best // K
            cand[:, lo:hi] = topi.flatten(1).gather(1, best)
            parents[:, lo:hi], rank[:, lo:hi], dep[lo:hi] = par, best % K, d
            score[:, lo:hi], logp_cand[:, lo:hi] = s.gather(1, best), lp.gather(1, best)
            anc[:, lo:hi] = anc.gather(1, par[..., None].expand(B, K, E))
            anc[:, torch.arange(lo, hi, device=dev), torch.arange(lo, hi, device=dev)] = True
            last, plo = d, lo
            if d == depth or self._stop(score[:, lo:hi]):
                break
            logits = self.runner.forward_nodes(cand[:, lo:hi], self.root_slot, self.root_slot_host, lo,
                                               anc[:, lo:hi, :hi], d)
            seen.append(logits)
            if seen_h is not None:
                seen_h.append(self.runner.last_hidden)
        E = 1 + last * K
        budget = min(self.spec.budget or depth * K, E - 1)
        stats = None
        if want_stats:
            p = parents[:, :E].clamp(min=0)
            stats = {"d_logp_cand": logp_cand[:, :E], "d_logp_top": node["top"].gather(1, p),
                     "d_entropy": node["ent"].gather(1, p), "d_margin": node["margin"].gather(1, p)}
            lg = torch.cat(seen, dim=1)  # [B, n_processed, V]
            stats["d_parent_logits"] = lg.gather(1, p[..., None].expand(B, E, lg.shape[-1]))  # [B, E, V]
            if seen_h is not None:
                hs = torch.cat(seen_h, dim=1)  # [B, n_processed, H_draft]
                stats["d_parent_hidden"] = hs.gather(1, p[..., None].expand(B, E, hs.shape[-1]))
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
        return self.root_slot + torch.clamp(accept_len + 1, max=d.levels)
