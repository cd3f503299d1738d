"""Plain PyTorch / Python-loop implementations of the cospec ops: the oracle the
kernels are tested against. Written for clarity, not speed; float64 math.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from .ops import MIN_TEMPERATURE, LogitStats, VerifyOutput


def _entropy(x: torch.Tensor) -> torch.Tensor:
    """-sum p log p of softmax(x) over the last dim as log s - sum(e d) / s with d = x - max,
    e = exp(d), s = sum e: exact for huge logits, where x - logsumexp(x) loses log s even in
    float64 (70000 zeros then two logits 1e34: ln 2, not 0; issue 23). A NaN gives NaN; a
    row with no finite max is left to the callers' special-row rules."""
    m = x.amax(-1, keepdim=True)
    d = x - torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = d.exp()
    s = e.sum(-1)
    u = torch.where(e > 0, e * d, torch.zeros_like(e)).sum(-1)
    return torch.where(s == 0, torch.zeros_like(s), s.log() - u / s)


def logit_stats_ref(
    logits: torch.Tensor, candidates: Optional[torch.Tensor] = None, parents: Optional[torch.Tensor] = None
) -> LogitStats:
    x = logits.double()  # [B, N, V]
    B, N, V = x.shape
    lse = torch.logsumexp(x, dim=-1)  # [B, N]
    logp = x - lse[..., None]
    entropy = _entropy(x)
    top = x.topk(min(2, V), dim=-1).values
    margin = top[..., 0] - top[..., 1] if V > 1 else torch.full((B, N), math.inf, dtype=x.dtype)
    cand_logprob = torch.zeros((B, N), dtype=torch.float64)
    if candidates is not None:
        for b in range(B):
            for i in range(1, N):
                par = int(parents[b, i])
                cand_logprob[b, i] = logp[b, par, int(candidates[b, i])]
    argmax, mx = x.argmax(-1), x.amax(-1)  # torch.argmax: the first maximal index (a NaN first)
    # rows with a NaN, a +inf or only -inf (csrc/logit_stats/logit_stats.h: special_row_stats)
    nan_row = torch.isnan(x).any(-1)
    n_inf = (x == math.inf).sum(-1)
    inf_row = ~nan_row & (n_inf > 0)
    masked = (x == -math.inf).all(-1)
    nan = torch.full_like(lse, math.nan)
    mx, lse, entropy, margin = (torch.where(nan_row, nan, t) for t in (mx, lse, entropy, margin))
    mx, lse = (torch.where(inf_row, math.inf, t) for t in (mx, lse))
    entropy = torch.where(inf_row, nan, torch.where(masked, 0.0, entropy))
    one = (n_inf == 1) | (V == 1)
    margin = torch.where(inf_row, torch.where(one, math.inf, nan), margin)
    margin = torch.where(masked, math.inf if V == 1 else math.nan, margin)
    return LogitStats(argmax, mx.float(), lse.float(), entropy.float(), margin.float(), cand_logprob.float())


def _children(parents_row: list[int], node: int) -> list[int]:
    return [i for i in range(node + 1, len(parents_row)) if parents_row[i] == node]


def verify_tree_ref(
    candidates: torch.Tensor,
    parents: torch.Tensor,
    target_logits: Optional[torch.Tensor] = None,
    accept_draft: Optional[torch.Tensor] = None,
    temperature: float = 0.0,
    uniforms: Optional[torch.Tensor] = None,
    *,
    target_argmax: Optional[torch.Tensor] = None,
) -> VerifyOutput:
    """The CoSpec tree walk, one sequence and one node at a time (see ops.verify_tree)."""
    B, N = candidates.shape
    if temperature < MIN_TEMPERATURE:  # greedy (ops.verify_tree's rule)
        temperature = 0.0
    path = torch.full((B, N), -1, dtype=torch.int64)
    accept_len = torch.zeros(B, dtype=torch.int64)
    next_token = torch.zeros(B, dtype=torch.int64)
    consulted = torch.zeros(B, N, dtype=torch.bool)
    arb = torch.zeros(B, N, dtype=torch.bool)
    for b in range(B):
        cand = candidates[b].tolist()
        par = parents[b].tolist()
        acc = accept_draft[b].tolist() if accept_draft is not None else None
        node, walk = 0, [0]
        while True:
            kids = _children(par, node)
            nxt = None
            if temperature == 0.0:
                if target_argmax is not None:
                    t = int(target_argmax[b, node])
                else:
                    t = int(target_logits[b, node].double().argmax())
                nxt = next((c for c in kids if cand[c] == t), None)
            else:
                p = torch.softmax(target_logits[b, node].double() / temperature, dim=-1)
                q = p.clone()
                for c in kids:  # accept c with probability q[c] / sum(q), else remove its token
                    if float(uniforms[b, c]) * float(q.sum()) < float(q[cand[c]]):
                        nxt = c
                        break
                    q[cand[c]] = 0.0
            if nxt is None and acc is not None:  # the arbiter's turn
                for c in kids:
                    consulted[b, c] = True
                    if acc[c]:
                        arb[b, c] = True
                        nxt = c
                        break
            if nxt is None:
                if temperature == 0.0:
                    next_token[b] = t
                else:  # inverse CDF of the residual q / sum(q) with uniforms[b, 0]
                    cdf = torch.cumsum(q, 0)
                    hit = (cdf > float(uniforms[b, 0]) * float(q.sum())) & (q > 0)
                    nz, mass = hit.nonzero(), (q > 0).nonzero()
                    if len(nz) or len(mass):
                        next_token[b] = int(nz[0]) if len(nz) else int(mass[-1])
                    else:  # no token with mass (NaN logits): the largest non-NaN logit, children's last
                        x = target_logits[b, node].double()
                        ok = ~torch.isnan(x)
                        free = ok.clone()
                        free[[cand[c] for c in kids]] = False
                        pool = free if bool(free.any()) else ok
                        vs = pool.nonzero()[:, 0].tolist()  # ties: the lowest index
                        next_token[b] = max(vs, key=lambda v: (float(x[v]), -v)) if vs else 0
                break
            walk.append(nxt)
            node = nxt
        path[b, : len(walk)] = torch.tensor(walk)
        accept_len[b] = len(walk) - 1
    dev = candidates.device
    return VerifyOutput(*(t.to(dev) for t in (path, accept_len, next_token, consulted, arb)))


def arbiter_score_ref(
    features: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: Optional[torch.Tensor] = None,
    b2: Optional[torch.Tensor] = None,
    *,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
    activation: str = "gelu",
) -> torch.Tensor:
    act = F.gelu if activation == "gelu" else F.relu
    h = act(F.linear(features.double(), w1.double(), b1.double()))
    if w2 is not None:
        h = act(F.linear(h, w2.double(), b2.double()))
    return (h @ w_out.double() + b_out.double().reshape(())).float()


def node_features_ref(target_logits: torch.Tensor, candidates: torch.Tensor, parents: torch.Tensor,
                      depth: torch.Tensor, rank: torch.Tensor, n_generated: torch.Tensor,
                      draft_parent_logits: torch.Tensor, levels: int) -> torch.Tensor:
    """ops.node_features, node by node from its definition (float64 math) -> float32 [B, N, 20]."""
    x = target_logits.double()
    d = draft_parent_logits.double()
    B, N, V = x.shape
    par, dep, rnk = (t.expand(B, N) for t in (parents, depth, rank))
    out = torch.zeros(B, N, 20, dtype=torch.float64)

    def stats(row):  # log-probs, top log-prob, entropy, margin (capped), argmax
        lp = row - torch.logsumexp(row, 0)
        top = row.topk(min(2, V)).values
        margin = float(top[0] - top[1]) if V > 1 else math.inf
        ent = float(_entropy(row))
        return lp, float(lp.max()), ent, min(margin, 1e4), int(row.argmax())

    for b in range(B):
        pr = par[b].tolist()
        st = [stats(x[b, i]) for i in range(N)]
        for i in range(1, N):
            p, c = pr[i], int(candidates[b, i])
            lp_t, top_t, ent_t, mar_t, _ = st[p]
            lp_d, top_d, ent_d, mar_d, _ = stats(d[b, i])
            kl = float((lp_d.exp() * (lp_d - lp_t)).sum())
            above = int((x[b, p] > x[b, p, c]).sum())
            # look-ahead: follow the smallest-index child, at most `levels` nodes
            n = acc = 0
            nxt = tot = 0.0
            run, node = True, i
            while n < levels:
                kids = [j for j in range(N) if pr[j] == node]
                if not kids:
                    break
                k = kids[0]
                lp = float(st[node][0][int(candidates[b, k])])
                nxt = lp if n == 0 else nxt
                n, tot = n + 1, tot + lp
                run = run and st[node][4] == int(candidates[b, k])
                acc += int(run)
                node = k
            out[b, i] = torch.tensor([
                float(lp_t[c]), top_t, ent_t, mar_t, math.log1p(above),
                float(lp_d[c]), top_d, ent_d, mar_d, max(kl, 0.0),
                float(dep[b, i]), float(rnk[b, i]), float(n_generated[b] + dep[b, i]),
                st[i][1], st[i][2], st[i][3],
                n, acc, nxt, tot / max(n, 1)], dtype=torch.float64)
    return out.float()


def kv_rollback_ref(cache: torch.Tensor, base_len: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    """Gathers every source slot first, then writes: no aliasing question arises."""
    B, N = path.shape
    new_len = base_len.clone()
    for b in range(B):
        base = int(base_len[b])
        src = [int(p) for p in path[b] if int(p) >= 0]
        rows = [cache[..., b, :, base + s, :].clone() for s in src]
        for j, row in enumerate(rows):
            cache[..., b, :, base + j, :] = row
        new_len[b] = base + len(src)
    return new_len


def commit_tokens_ref(seq, total, candidates, path, accept_len, next_token, eos_ids, limit: int) -> torch.Tensor:
    """Row by row in Python: build the round's tokens, cut at the first EOS and at `limit`,
    append them (seq and total in place); returns int64 [3, B]: kept, finished, accept_len."""
    B = path.shape[0]
    eos = set(eos_ids.tolist())
    out = torch.zeros(3, B, dtype=torch.int64)
    for b in range(B):
        a, t = int(accept_len[b]), int(total[b])
        toks = [int(candidates[b, int(path[b, j + 1])]) for j in range(a)] + [int(next_token[b])]
        hit = next((j for j, x in enumerate(toks) if x in eos), None)
        if hit is not None:
            toks = toks[: hit + 1]
        room = limit - t
        kept = max(min(len(toks), room), 0)
        for j in range(kept):
            seq[b, t + j] = toks[j]
        total[b] = t + kept
        out[:, b] = torch.tensor([kept, int((hit is not None and hit < kept) or kept >= room), a])
    return out.to(seq.device)


def cospec_decode_ref(target, draft, prompt: list[int], k: int, max_new_tokens: int, eos_ids=(),
                      arbiter=None, threshold: float = 0.5) -> list[int]:
    """The CoSpec walk over a chain of k drafted tokens, written for clarity: no caches
    (every logit is a full forward over the whole prefix), one prompt, greedy.

    Each round: the draft proposes d_1..d_k greedily; the target's logits after the root
    and after each d_i give t_i = argmax; d_i is accepted when d_i == t_i, or else when
    arbiter(t_logp_cand, d_logp_cand) >= threshold (log-probabilities of d_i under the
    target and the draft at its parent); the first rejection stops the round and the
    target's argmax there is emitted. Returns the generated tokens (cut after EOS and at
    max_new_tokens). arbiter=None is plain greedy speculative decoding.
    """

    def logits(model, seq):
        return model(input_ids=torch.tensor([seq])).logits[0].float()  # [len, V]

    seq, out = list(prompt), []
    with torch.no_grad():
        out.append(int(logits(target, seq)[-1].argmax()))
        while out[-1] not in eos_ids and len(out) < max_new_tokens:
            root = seq + out
            drafts, d_logp = [], []
            for _ in range(k):
                lg = logits(draft, root + drafts)[-1].log_softmax(-1)
                drafts.append(int(lg.argmax()))
                d_logp.append(float(lg[drafts[-1]]))
            t_lg = logits(target, root + drafts)[len(root) - 1:].log_softmax(-1)  # [k + 1, V]
            new = []
            for i, d in enumerate(drafts):
                t = int(t_lg[i].argmax())
                ok = d == t or (arbiter is not None and arbiter(float(t_lg[i, d]), d_logp[i]) >= threshold)
                if not ok:
                    break
                new.append(d)
            new.append(int(t_lg[len(new)].argmax()))
            for tok in new:
                out.append(tok)
                if tok in eos_ids or len(out) >= max_new_tokens:
                    break
    return out


def tree_mask_ref(pad: torch.Tensor, root_slot: torch.Tensor, anc: torch.Tensor, S: int) -> torch.Tensor:
    """bool [B, 1, nq, S] slot by slot: the prefix [pad, root_slot), then the tree's slots."""
    B, (_, nq, n) = pad.shape[0], anc.shape
    out = torch.zeros(B, 1, nq, S, dtype=torch.bool)
    for b in range(B):
        p, r = int(pad[b]), int(root_slot[b])
        for q in range(nq):
            for s in range(S):
                j = s - r
                out[b, 0, q, s] = bool(anc[b if anc.shape[0] > 1 else 0, q, j]) if 0 <= j < n else p <= s < r
    return out


def linear_rows_ref(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """linear_rows in float64: y[..., n] = sum_k x[..., k] weight[n, k] + bias[n], float64 [..., N]."""
    y = x.double() @ weight.double().T
    return y if bias is None else y + bias.double()


def linear_packed_ref(x: torch.Tensor, packed: torch.Tensor, n: int, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """linear_packed in float64, from the panels by loops over them (not pack_weight's inverse):
    W[p * 48 + c, k] = packed[p, k, c]; y[..., j] = sum_k x[..., k] W[j, k] + bias[j], float64 [..., n]."""
    P, K, C = packed.shape
    w = torch.zeros(P * C, K, dtype=torch.float64)
    for p in range(P):
        for c in range(C):
            w[p * C + c] = packed[p, :, c].double()
    return linear_rows_ref(x, w[:n], bias)


def tree_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                       scale: Optional[float] = None) -> torch.Tensor:
    """tree_attention in float64 by loops over rows, heads and queries: for each query the
    open slots S_i = {s : mask[b, 0, i, s]}, p = softmax(scale * q . k_s for s in S_i),
    o = sum p_s v_s over K/V head h // (Hq / Hk); zeros where S_i is empty. float64 [B, Hq, n, D]."""
    B, Hq, n, D = q.shape
    g = Hq // k.shape[1]
    scale = D ** -0.5 if scale is None else scale
    q, k, v = q.double().cpu(), k.double().cpu(), v.double().cpu()
    mask = mask.cpu()
    out = torch.zeros(B, Hq, n, D, dtype=torch.float64)
    for b in range(B):
        for h in range(Hq):
            for i in range(n):
                open_ = mask[b, 0, i].nonzero()[:, 0]
                if open_.numel() == 0:
                    continue
                s = (k[b, h // g, open_] @ q[b, h, i]) * scale  # [|S_i|]
                p = torch.softmax(s, dim=0)
                out[b, h, i] = p @ v[b, h // g, open_]
    return out
