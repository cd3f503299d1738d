"""The decoding loop: prefill, then rounds of draft -> one target forward -> verify -> commit.

State per active row b (all on the device, mirrored on the host where a step needs it):
    seq[b, s]   the left-padded token sequence; the committed token at position s sits at
                cache slot s in both models (the prompt in [0, P), then generated tokens)
    total[b]    committed tokens, prompt padding included; the root (the last committed
                token) is seq[b, total - 1] and is not in the target cache yet; the row has
                generated total - P tokens
    dlen[b]     tokens in the draft cache (<= total)
    pad[b]      left-padding length
Rows that finish are written out and compacted away, so later steps cost only live rows.
"""

from __future__ import annotations

import os
import time

import torch

from .. import ops
from .adaptive import MEMORY, DepthController
from .adapter import ModelAdapter
from .draft import Draft, Drafter
from .features import hidden_inputs_of, node_features
from .kv import KVCache
from .native import CARRIED_ROWS_MAX, batch_bucket
from .runner import ModelRunner
from .selfdraft import shared_prefix_layers
from .stop import StopStrings
from .stream import Stream
from .tree import TreeSpec
from .warp import Warper


class SpecEngine:
    def __init__(self, verifier: ModelAdapter, drafter: ModelAdapter | None, input_ids: torch.Tensor,
                 pad: torch.Tensor, spec: TreeSpec, max_new_tokens: int, temperature: float, eos_ids: list[int],
                 pad_token_id: int, arbiter=None, arbiter_cols=None, threshold: float = 0.5,
                 sample_arbiter: bool = False, generator: torch.Generator | None = None, trace: list | None = None,
                 rollout_ids: torch.Tensor | None = None, arbiter_seed: int = 0, warper: Warper | None = None,
                 stop: StopStrings | None = None, stream: Stream | None = None):
        B, P = input_ids.shape
        dev = input_ids.device
        self.B0, self.P, self.dev = B, P, dev
        self.spec, self.max_new, self.T = spec, max_new_tokens, float(temperature)
        self.arbiter, self.arbiter_cols, self.threshold = arbiter, arbiter_cols, threshold
        self.sample_arbiter, self.gen, self.trace = sample_arbiter, generator, trace
        # top-k / top-p / min-p: -inf at the filtered tokens of the logits that sampling reads
        self.warp = warper if warper is not None and warper.active else None
        self.stop, self.stream = stop, stream  # stop strings, streamer (None: off)
        # sample_arbiter draws are keyed by (seed, rollout id, position, node), so a row's
        # decisions do not depend on the batch it was decoded in (data-parallel RL)
        self.arbiter_seed = arbiter_seed
        self.rollout_ids = (torch.arange(B) if rollout_ids is None else rollout_ids.long()).to(dev)  # live rows'
        depth = spec.depth if drafter is not None else 0
        S = P + max_new_tokens + spec.max_expanded + 2
        self.seq = torch.zeros(B, S, dtype=torch.int64, device=dev)  # [B, S]
        self.seq[:, :P] = input_ids
        self.pad = pad.clone()
        self.total = torch.full((B,), P, dtype=torch.int64, device=dev)
        self.total_h = torch.full((B,), P, dtype=torch.int64)  # its host mirror, to size forwards
        self.rows = torch.arange(B)  # original row id of each live row
        self.eos = torch.tensor(eos_ids or [-1], dtype=torch.int64, device=dev)
        # The adaptive depth is free to follow measured forward times only when the output
        # cannot depend on the tree (greedy spd is lossless); when it can (sampling, an
        # arbiter), the draft/target cost comes from the parameter counts, so a seed repeats.
        # Under tensor parallelism every rank must choose the same depth (their collectives
        # must match), so timings, which differ between ranks, never steer it.
        cost = spec.draft_cost
        tp = getattr(verifier, "tensor_parallel", False) or getattr(drafter, "tensor_parallel", False)
        if cost is None and drafter is not None and (self.T > 0 or arbiter is not None or tp):
            cost = drafter.num_params / max(verifier.num_params, 1)
        self.ctrl = DepthController(depth, spec.adaptive, cost)
        # COSPEC_TP_CHECK=1: under tensor parallelism, check every round that all ranks
        # committed the same tokens (one all-reduce per round; a debugging aid)
        self.tp_check = tp and os.environ.get("COSPEC_TP_CHECK", "0") not in ("", "0")
        # the ranks that must agree: the target's tensor-parallel group (not the data-parallel
        # replicas of a 2-D mesh, which decode other prompts)
        self.tp_group = getattr(verifier, "tp_group", None)
        timed = self._timed = depth > 0 and spec.adaptive and cost is None
        # where timings steer the depth (the output cannot depend on it), a call starts from what
        # the last call with these models and shapes learned (adaptive.PairMemory)
        self._memory = None
        if timed and getattr(verifier, "model", None) is not None and getattr(drafter, "model", None) is not None:
            kinds = tuple((type(a).__name__, getattr(a, "compile", None), str(a.device)) for a in (verifier, drafter))
            self._memory = (verifier.model, drafter.model, (B, repr(spec), torch.get_num_threads()) + kinds)
            st = MEMORY.get(*self._memory)
            if st is not None:
                self.ctrl.restore(st)
        max_query = max(P, spec.max_expanded, 32)
        self.target = ModelRunner(verifier, B, S, max_query, self.pad, time_forwards=timed)
        # a self-draft (the target's first layers) reads and writes the target's cache of those
        # layers: no prefill, a one-token catch-up per round (engine/selfdraft.py)
        self.shared = shared_prefix_layers(verifier, drafter) if depth else 0
        shared_cache = KVCache.prefix_of(self.target.cache, self.shared) if self.shared else None
        self.draft_runner = ModelRunner(drafter, B, S, max_query, self.pad, time_forwards=timed,
                                        cache=shared_cache) if depth else None
        self.drafter = Drafter(self.draft_runner, spec) if depth else None
        # a draft with its own cache is prefilled before the first round that drafts (a call
        # whose every round is a plain step, a draft remembered as useless, never runs it)
        self.draft_ready = not depth or bool(self.shared)
        self.use_hidden = arbiter is not None and getattr(arbiter, "hidden_sizes", None) is not None
        self.hidden_inputs = hidden_inputs_of(arbiter) if self.use_hidden else ()
        if self.use_hidden:
            self.target.want_hidden = True
            if self.draft_runner is not None and "d_parent" in self.hidden_inputs:
                self.draft_runner.want_hidden = True
        self.dlen = torch.full((B,), P, dtype=torch.int64, device=dev)
        self.dlen_h = torch.full((B,), P, dtype=torch.int64)
        self.pad_token_id = pad_token_id
        self.out = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.int64, device=dev)
        self.out_len = torch.zeros(B, dtype=torch.int64)
        self.node_ids = self.target.node_ids  # arange(max_query), preallocated
        self.root_tree = _root_only(dev)  # the tree of a round without drafting (less its tokens)
        self._expanded: dict = {}  # (id of a shared tree table, B) -> (table, contiguous [B, N])
        # statistics
        self.pending: torch.Tensor | None = None  # prompt tokens whose target prefill the next forward carries
        self.draft_prompt_len = P  # prompt tokens the draft's prefill covers (P - 1: the first root is the last)
        self.rounds = self.row_rounds = self.committed = 0
        self.consulted = self.arbiter_accepted = 0

    # -- helpers ------------------------------------------------------------------------
    def _pick(self, logits: torch.Tensor) -> torch.Tensor:
        """Next token from logits [B, V]: argmax, or a sample at temperature T (after the warpers)."""
        if self.T == 0.0:
            return logits.argmax(-1)
        if self.warp is not None:
            logits = self.warp(logits)  # [B, V], -inf where filtered
        probs = torch.softmax(logits.float() / self.T, dim=-1)
        return torch.multinomial(probs, 1, generator=self.gen)[:, 0]

    def _commit(self, cand: torch.Tensor, path: torch.Tensor, accept_len: torch.Tensor, next_token: torch.Tensor,
                extra: list[torch.Tensor]) -> torch.Tensor:
        """Appends each row's accepted tokens (cand [B, N] along path [B, N]) and next_token [B],
        cut after EOS and at max_new_tokens, to `seq`, advancing `total` (ops.commit_tokens,
        one kernel; the engine's own tensors, so the raw op). Returns CPU int64
        [3 + len(extra), B]: kept, finished, accept_len, *extra (the round's one host sync)."""
        counts = torch.ops.cospec.commit_tokens(self.seq, self.total, cand, path, accept_len, next_token, self.eos,
                                    self.P + self.max_new)  # [3, B]
        if extra:
            counts = torch.cat([counts, torch.stack(extra)])
        return counts.cpu()

    # -- the loop -------------------------------------------------------------------------
    def run(self, input_ids: torch.Tensor) -> None:
        self.prompt = input_ids  # [B0, P]: the draft's prefill, when it first drafts
        if self.stream is not None:
            self.stream.prompt(input_ids)
        if self._defers_prefill():
            # the first round's target forward carries the prefill: the prompt's last token is
            # its root (committed, not yet in either cache), its first P - 1 tokens are pending
            self.pending = input_ids[:, :-1]  # [B0, P - 1]
            self.draft_prompt_len = self.P - 1
            self.dlen -= 1
            self.dlen_h -= 1
        else:
            logits = self.target.prefill(input_ids)  # [B, V]
            first = self._pick(logits)  # [B]
            zeros = torch.zeros_like(first)
            kept, fin, _ = self._commit(first[:, None], zeros[:, None], zeros, first, [])
            kept, fin = self._after_commit(kept, fin)
            self.total_h += kept
            self._retire(fin.bool())
        while self.rows.numel():
            self._round()
        if self._memory is not None:
            MEMORY.put(*self._memory, self.ctrl.state())

    def _defers_prefill(self) -> bool:
        """Whether the target's prefill rides on the first round's forward (runner.forward_prefix_nodes):
        one forward over P - 1 + N tokens instead of a prefill over P and, a round later, a
        verification over N. At batch 1 that forward costs about a prefill (the demo target: a
        forward over 18 tokens against 11), so the call saves a verification forward (~2 ms of a
        ~20 ms call). Taken where such a prefill is one compiled graph (a static-shape verifier on
        the CPU, batch bucket x (P - 1 + the tree's nodes) <= native.CARRIED_ROWS_MAX), a draft
        with its own cache drafts the first round, nothing steers the depth by timings (the first
        round's time would include the prefill), and there is no arbiter: the first token then
        is a draft candidate the arbiter could accept, and the rounds fall elsewhere, so cospec's
        output would differ from its uncompiled run's (spd's cannot: it is the target's)."""
        if (self.drafter is None or self.arbiter is not None or self.shared or self._timed or self.P < 2
                or self.dev.type != "cpu"
                or not (self.target.static and getattr(self.target.adapter, "compile", False) is True)):
            return False
        return batch_bucket(self.B0, self.target.cache.data.shape[2]) * (self.P - 1 + self.spec.max_expanded) \
            <= CARRIED_ROWS_MAX

    def _prefill_draft(self) -> None:
        """The draft's prefill over the live rows' prompts (slots [0, P), as the target's; [0, P - 1)
        when the target's prefill is deferred: the prompt's last token is the first root)."""
        ids = self.prompt[:, :self.draft_prompt_len]
        if self.rows.numel() != ids.shape[0]:  # rows finished before the draft first ran
            ids = ids.index_select(0, self.rows.to(ids.device))
        s0 = self.draft_runner.seconds
        self.draft_runner.prefill(ids)
        self.ctrl.observe_prefill(self.draft_runner.seconds - s0, ids.shape[1])  # a first estimate of a probe's cost
        self.draft_ready = True

    def _round(self) -> None:
        B = len(self.rows)
        depth = self.ctrl.choose() if self.drafter is not None else 0
        if depth and not self.draft_ready:
            self._prefill_draft()
        root_slot, root_slot_h = self.total - 1, self.total_h - 1
        root = self.seq.gather(1, root_slot[:, None])[:, 0]
        t_round0, c_round0 = time.perf_counter(), self._compile_seconds()
        t_draft0 = self.draft_runner.seconds if self.draft_runner else 0.0
        f_draft0 = self.draft_runner.forwards if self.draft_runner else 0
        if depth > 0:
            want = self.arbiter is not None
            d = self.drafter.chain_round(self.dlen_h, self.total_h, root, root_slot, root_slot_h, depth, want)
            if d is None:
                root_logits = self.drafter.catch_up(self.seq, self.dlen, self.dlen_h, self.total, self.total_h, root,
                                                    root_slot, root_slot_h)
                d = self.drafter.draft(depth, root, root_logits, want_stats=want)
        else:
            d = Draft(root[:, None], *self.root_tree)
        generated = self.total - self.P if (self.arbiter is not None or self.trace is not None) else None  # [B]
        cand = d.candidates.contiguous()  # [B, N]
        parents = self._rows_of(d.parents, B)  # [B, N]
        N = cand.shape[1]
        carried = self.pending is not None  # this forward carries the target's prefill
        if carried:
            logits = self.target.forward_prefix_nodes(self.pending, cand, root_slot, root_slot_h, d.anc, d.depth)
            self.pending = None
        else:
            logits = self.target.forward_nodes(cand, root_slot, root_slot_h, 0, d.anc, d.depth)  # [B, N, V]
        # for its argmax (the engine's own logits: the kernel without the wrapper's checks)
        ls = ops.logit_stats_unchecked(logits) if self.arbiter is not None else None
        accept = feats = probs = hid = None
        # Greedy, the arbiter is consulted only where a drafted token differs from the target's
        # choice: on the CPU (where reading the check costs no device sync) a round whose every
        # token matches (most rounds of a good draft) skips the features and the arbiter; the
        # walk is the same either way
        consult = self.arbiter is not None and N > 1 and (
            self.T > 0 or self.dev.type != "cpu"
            or bool((cand[:, 1:] != ls.argmax.gather(1, parents[:, 1:].clamp(min=0))).any()))
        if consult:
            feats = node_features(logits, cand, parents, d.depth, d.rank, d.stats, generated, d.levels)
            x = feats[:, 1:, self.arbiter_cols].reshape(B * (N - 1), len(self.arbiter_cols))
            if self.use_hidden:  # the models' last hidden states the arbiter reads (features.py)
                hid = self._hidden(parents, d)  # [B, N, sum(hidden_sizes)]
                p = self.arbiter.predict_proba(x, hidden=hid[:, 1:].reshape(B * (N - 1), -1))
            else:
                p = self.arbiter.predict_proba(x)
            p = p.reshape(B, N - 1).float()
            probs = torch.cat([torch.zeros(B, 1, device=self.dev), p], dim=1)  # [B, N]
            if self.sample_arbiter:
                accept = hash_uniform(self.arbiter_seed, self.rollout_ids, generated, N) < probs
            else:
                accept = probs >= self.threshold
            accept[:, 0] = False
        if self.T == 0.0 and ls is not None:  # the arbiter's features already needed the argmax
            v = ops.verify_tree_unchecked(cand, parents, None, ls.argmax, accept)
        elif self.T == 0.0:  # reads only the rows of the nodes the walk visits
            v = ops.verify_tree_unchecked(cand, parents, logits)
        else:
            u = torch.rand(B, N, generator=self.gen, device=self.dev)
            # the walk samples the warped distribution; the arbiter's features above read the raw
            # logits, as they did when it was trained (its inputs do not depend on the knobs)
            w = self.warp(logits) if self.warp is not None else logits  # [B, N, V]
            v = ops.verify_tree_unchecked(cand, parents, w, None, accept, self.T, u)
        arb_counts = [v.consulted.sum(1), v.arbiter_accepted.sum(1)] if self.arbiter is not None else []
        res = self._commit(cand, v.path, v.accept_len, v.next_token, arb_counts)  # CPU [3 (+2), B]
        kept, fin = self._after_commit(res[0], res[1])
        host = res.tolist()
        acc_l = host[2]  # levels accepted per row
        sums = [sum(r) for r in host]  # over the rows: kept, finished, accepted (, consulted, arbiter-accepted)
        if self.tp_check:
            new_tok = torch.cat([cand.gather(1, v.path.clamp(min=0))[:, 1:], v.next_token[:, None]], dim=1)
            _check_ranks_agree(new_tok, kept, self.rounds, self.tp_group)
        self.target.cache.rollback(root_slot, v.path)
        self.total_h += kept
        if self.shared:  # the target's forward wrote every committed token but the new root
            self.dlen, self.dlen_h = self.total - 1, self.total_h - 1
        elif depth > 0:
            self.dlen = self.drafter.commit(d, v.path, v.accept_len)
            self.dlen_h = root_slot_h + res[2].clamp(max=d.fed_levels) + 1
        if self.drafter is not None and not carried:
            # the round's time less its draft forwards (and any graph compiled in it): the
            # target's forward plus the engine's own work, which grows with the tree
            round_s = time.perf_counter() - t_round0 - (self._compile_seconds() - c_round0)
            spent = self.draft_runner.seconds - t_draft0
            if depth > 0:
                self.ctrl.observe(d.levels, acc_l)
                nf = self.draft_runner.forwards - f_draft0
                self.ctrl.observe_times(d.levels, spent / max(nf, 1), round_s - spent, spent)
            else:
                self.ctrl.observe_times(0, None, round_s)
        self.rounds += 1
        self.row_rounds += B
        self.committed += sums[2] + B
        if arb_counts:
            self.consulted += sums[3]
            self.arbiter_accepted += sums[4]
        if self.trace is not None:
            self.trace.append(_trace_step(self, cand, parents, v, generated, feats, probs, accept, hid))
        if sums[1] or (self.stop is not None and bool(fin.any())):
            self._retire(fin.bool())

    def _after_commit(self, kept: torch.Tensor, fin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stop strings and streaming over the tokens a commit just appended: kept, fin (CPU int64
        [B], commit_tokens' counts; `total_h` not yet advanced). A row whose new tokens complete a
        stop string is cut after the first such token (its `total` moves back; it finishes).
        Returns the (possibly cut) kept, fin."""
        if self.stop is None and self.stream is None:
            return kept, fin
        start = self.total_h  # CPU [B]: the first new token's slot
        back = self.stop.window if self.stop is not None else 0
        lo = (start - back).clamp(min=0)  # [B]
        width = int((start + kept - lo).max())
        idx = (lo[:, None] + torch.arange(width)[None, :]).clamp(max=self.seq.shape[1] - 1)  # [B, width]
        host = self.seq.gather(1, idx.to(self.dev)).tolist()  # [B][width]: the tails, one sync
        n_new = kept.tolist()
        tails = [host[b][: int(start[b] - lo[b]) + n_new[b]] for b in range(len(n_new))]
        if self.stop is not None:
            cut = self.stop.cut(tails, n_new)
            hit = [b for b, c in enumerate(cut) if c is not None]
            if hit:
                kept, fin = kept.clone(), fin.clone()
                for b in hit:
                    kept[b], fin[b] = cut[b], 1
                    tails[b] = tails[b][: len(tails[b]) - n_new[b] + cut[b]]
                    n_new[b] = cut[b]
                h = torch.tensor(hit)
                self.total[h.to(self.dev)] = (start[h] + kept[h]).to(self.dev)
        if self.stream is not None:
            self.stream.chunks(self.rows.tolist(), [t[len(t) - n:] if n else [] for t, n in zip(tails, n_new)])
        return kept, fin

    def _compile_seconds(self) -> float:
        """Seconds the models' forwards have spent compiling graphs (compile=True)."""
        s = getattr(self.target.adapter, "compile_seconds", 0.0)
        return s + (getattr(self.draft_runner.adapter, "compile_seconds", 0.0) if self.draft_runner else 0.0)

    def _rows_of(self, t: torch.Tensor, B: int) -> torch.Tensor:
        """A tree table [1 or B, N] as a contiguous [B, N] tensor; a shared one (a static tree's,
        [1, N], kept alive by its tables) is expanded once per (table, B)."""
        if t.shape[0] == B:
            return t.contiguous()
        key = (id(t), B)
        hit = self._expanded.get(key)
        if hit is None or hit[0] is not t:
            hit = self._expanded[key] = (t, t.expand(B, *t.shape[1:]).contiguous())
        return hit[1]

    def _hidden(self, parents: torch.Tensor, d: Draft) -> torch.Tensor:
        """float32 [B, N, sum(hidden_sizes)]: per hidden input, the last hidden state of the
        target at each node's parent (t_parent) or at the node (t_cand), or of the draft at the
        parent (d_parent)."""
        th = self.target.last_hidden  # [B, N, H_t]
        B, N, H = th.shape
        parts = []
        for k in self.hidden_inputs:
            if k == "t_parent":
                parts.append(th.gather(1, parents.clamp(min=0)[..., None].expand(B, N, H)))
            else:
                parts.append(th if k == "t_cand" else d.stats["d_parent_hidden"])
        return torch.cat(parts, dim=-1).float()

    def _retire(self, finished: torch.Tensor) -> None:
        """Writes the rows that finished (CPU bool [B]) to the output and compacts the batch
        to the live rows (only at finish events, not every step)."""
        if not bool(finished.any()):
            return
        f = finished.nonzero()[:, 0]
        f_dev = f.to(self.dev)
        self.out[self.rows[f].to(self.dev)] = self.seq[f_dev, self.P : self.P + self.max_new]
        self.out_len[self.rows[f]] = self.total_h[f] - self.P
        keep = (~finished).nonzero()[:, 0]
        if keep.numel():
            upto = int(self.total_h[keep].max()) + 1
            self.target.keep_rows(keep.tolist(), upto)
            if self.draft_runner is not None:
                self.draft_runner.keep_rows(keep.tolist(), upto)
            k = keep.to(self.dev)
            n = keep.numel()
            self.seq[:n] = self.seq[k]
            self.seq = self.seq[:n]  # a view: the buffer is kept
            self.total, self.dlen, self.rollout_ids = self.total[k], self.dlen[k], self.rollout_ids[k]
            self.pad = self.pad[k]
            self.target.pad = self.pad
            if self.draft_runner is not None:
                self.draft_runner.pad = self.pad
        self.rows, self.total_h, self.dlen_h = (t[keep] for t in (self.rows, self.total_h, self.dlen_h))

    def sequences(self, input_ids: torch.Tensor) -> torch.Tensor:
        """int64 [B, P + T] like generate(): the prompt, the new tokens, pad after each row's end."""
        T = int(self.out_len.max())
        new = self.out[:, :T]
        after = torch.arange(T)[None, :] >= self.out_len[:, None]
        return torch.cat([input_ids, new.masked_fill(after.to(self.dev), self.pad_token_id)], dim=1)


def _check_ranks_agree(new_tok: torch.Tensor, kept: torch.Tensor, step: int, group=None) -> None:
    """All ranks of `group` (the tensor-parallel group; None: the default group) committed
    the same tokens this round: an all-reduce (MAX) of (checksum, -checksum); a mismatch
    raises on every rank of the group."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    w = torch.arange(1, new_tok.numel() + 1, dtype=torch.float64, device=new_tok.device).view_as(new_tok)
    c = (new_tok.double() * w).sum() + float(kept.sum()) * 1e6
    both = torch.stack([c, -c])
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
    if float(both[0]) != -float(both[1]):
        raise RuntimeError(f"tensor-parallel ranks diverged at round {step}: their committed tokens differ")


def _root_only(dev: torch.device) -> tuple:
    """The tree of a round without drafting, the root alone (a plain decoding step): the
    Draft fields after `candidates`, built once."""
    z = torch.zeros(1, 1, dtype=torch.int64, device=dev)
    return (torch.full((1, 1), -1, dtype=torch.int64, device=dev), z, torch.ones(1, 1, 1, dtype=torch.bool, device=dev),
            z, None, 1, 0, None)


def _trace_step(eng: SpecEngine, cand, parents, v, n_gen_before, feats, probs, accept, hidden=None) -> dict:
    cpu = lambda t: None if t is None else t.detach().cpu()  # noqa: E731
    return {"step": eng.rounds - 1, "rows": eng.rows.tolist(), "position": cpu(n_gen_before),
            "candidates": cpu(cand), "parents": cpu(parents), "path": cpu(v.path), "accept_len": cpu(v.accept_len),
            "consulted": cpu(v.consulted), "arbiter_accepted": cpu(v.arbiter_accepted),
            "features": cpu(feats), "probs": cpu(probs), "decisions": cpu(accept), "hidden": cpu(hidden)}


def _mix32(h: torch.Tensor) -> torch.Tensor:
    m = 0xFFFFFFFF
    h = ((h >> 16) ^ h) * 0x45D9F3B & m
    h = ((h >> 16) ^ h) * 0x45D9F3B & m
    return (h >> 16) ^ h


def hash_uniform(seed: int, row: torch.Tensor, position: torch.Tensor, n: int) -> torch.Tensor:
    """Counter-based uniforms in [0, 1), float32 [B, n], a hash of (seed, row[b], position[b],
    node j): the same key gives the same number whatever else is in the batch."""
    m = 0xFFFFFFFF
    h = torch.full((row.shape[0], 1), int(seed) & m, dtype=torch.int64, device=row.device)
    node = torch.arange(n, device=row.device)[None, :]
    for k in (row[:, None], position[:, None], node):
        h = _mix32(((h * 1000003) ^ (k & m)) & m)
    return (h >> 8).float() / float(1 << 24)
