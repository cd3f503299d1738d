"""The engine's two bookkeeping kernels against the eager torch code they replaced, on the CPU.

    python bench/ops/round_ops_speed.py [--repeats 7] [--threads 2]

commit_tokens (append a round's accepted tokens + next token, cut at EOS and the limit,
advance the lengths) vs the former `SpecEngine._commit` composition (gather, cat, scatter,
isin, argmax, minimum, scatter, add: ~15 ops); tree_mask (a forward's tree attention mask
into a preallocated [B, 1, nq, S] buffer) vs the former `MaskBuilder.tree` (compare, copy,
scatter). Inputs are real verification rounds (tests' tree builders); outputs are checked
equal first. Each repeat times every case of both in turn (interleaved), 200 calls per
timing; printed: the median over repeats of us per call, and torch / kernel.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from _trees import ancestors, make_tree_inputs  # noqa: E402
from cospec_ext import reference  # noqa: E402

raw = torch.ops.cospec


def commit_torch(seq, total, cand, path, acc, nxt, eos, limit, j):
    new_tok = torch.cat([cand.gather(1, path.clamp(min=0))[:, 1:], nxt[:, None]], dim=1)  # [B, N]
    new_tok.scatter_(1, acc[:, None], nxt[:, None])
    count = acc + 1
    is_eos = torch.isin(new_tok, eos) & (j[None, :] < count[:, None])
    hit = is_eos.any(1)
    kept = torch.minimum(torch.where(hit, is_eos.int().argmax(1) + 1, count), limit - total)
    finished = hit | (kept >= limit - total)
    seq.scatter_(1, total[:, None] + j, new_tok)
    total += kept
    return torch.stack([kept, finished.long(), acc])


def mask_torch(out, pad, root, anc, slot_ids):
    B, nq, n = anc.shape
    root4 = root.view(B, 1, 1, 1)
    out.copy_((slot_ids >= pad.view(B, 1, 1, 1)) & (slot_ids < root4))
    out.scatter_(3, (root4 + slot_ids[:n]).expand(B, 1, nq, n), anc.view(B, 1, nq, n))
    return out


def per_call_us(fn, calls=200) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def cases(S=256):
    g = torch.Generator().manual_seed(0)
    out = []
    for B, N in ((1, 2), (1, 5), (8, 5), (8, 16)):
        cand, par, x = make_tree_inputs("random", B, N, 500, torch.float32, g, p_match=0.8)
        v = reference.verify_tree_ref(cand, par, x)
        seq, total = torch.randint(0, 500, (B, S), generator=g), torch.randint(1, S - 2 * N, (B,), generator=g)
        eos = torch.tensor([2])
        j = torch.arange(N)
        args = (cand, v.path, v.accept_len, v.next_token, eos, S)
        a, b = seq.clone(), seq.clone()
        ta, tb = total.clone(), total.clone()
        want = commit_torch(a, ta, *args[:5], S, j)
        got = raw.commit_tokens(b, tb, *args)
        same = torch.equal(got, want) and torch.equal(ta, tb) and all(
            torch.equal(a[r, : int(ta[r])], b[r, : int(tb[r])]) for r in range(B))
        assert same, f"commit_tokens differs from the torch composition at B={B} N={N}"
        anc = ancestors(par)  # [B, N, N]
        root = total.clone()
        pad = torch.randint(0, 8, (B,), generator=g)
        m1, m2 = torch.zeros(B, 1, N, S, dtype=torch.bool), torch.zeros(B, 1, N, S, dtype=torch.bool)
        slot_ids = torch.arange(S)
        mask_torch(m1, pad, root, anc, slot_ids)
        raw.tree_mask(m2, pad, root, anc)
        assert torch.equal(m1, m2), f"tree_mask differs from the torch composition at B={B} N={N}"
        name = f"B={B} N={N} S={S}"
        out.append((f"commit_tokens {name}",
                    lambda s=seq, t=total, a=args: raw.commit_tokens(s.clone(), t.clone(), *a),
                    lambda s=seq, t=total, a=args, j=j: commit_torch(s.clone(), t.clone(), *a[:5], S, j)))
        out.append((f"tree_mask {name}", lambda m=m2, p=pad, r=root, c=anc: raw.tree_mask(m, p, r, c),
                    lambda m=m1, p=pad, r=root, c=anc, s=slot_ids: mask_torch(m, p, r, c, s)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cs = cases()
    times = {name: ([], []) for name, _, _ in cs}
    for _ in range(args.repeats):
        for name, kern, ref in cs:
            times[name][0].append(per_call_us(kern))
            times[name][1].append(per_call_us(ref))
    print(f"round bookkeeping kernels vs the torch code they replaced, {args.repeats} interleaved repeats, "
          f"{args.threads} threads (us per call, median; commit timings include cloning seq and total)")
    print(f"  {'case':<34} {'kernel':>8} {'torch':>8} {'torch/kernel':>13}")
    for name, (k, r) in times.items():
        mk, mr = statistics.median(k), statistics.median(r)
        print(f"  {name:<34} {mk:>8.1f} {mr:>8.1f} {mr / mk:>12.1f}x")


if __name__ == "__main__":
    main()
