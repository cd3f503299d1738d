"""A short showcase of the four kernels on example inputs (`cospec demo --ops`).

It builds a small draft tree, verifies it greedily and with a stand-in arbiter,
samples, scores arbiter features and compacts a KV cache, printing each step.
(`make demo` runs the embedded task's comparison, `cospec_ext/task/demo.py`.)
"""

from __future__ import annotations

import time

import torch

from . import ops, reference


def _show(title: str) -> None:
    print(f"\n== {title} ==")


def main(seed: int = 0) -> int:
    g = torch.Generator().manual_seed(seed)
    V = 32000
    # A tree of 7 nodes: the root, two first-level drafts, and their continuations.
    #        0
    #      /   \
    #     1     2
    #    / \     \
    #   3   4     5 - 6
    parents = torch.tensor([[-1, 0, 0, 1, 1, 2, 5]])
    logits = torch.randn(1, 7, V, generator=g) * 2  # target logits after each node [B, N, V]
    amax = logits.argmax(-1)[0]
    # Drafts: node 2 agrees with the target at the root, node 5 agrees after node 2,
    # node 6 disagrees after node 5; the others are arbitrary.
    cand = torch.tensor([[11, 123, int(amax[0]), 7, 8, int(amax[2]), 999]])
    print(f"tree parents {parents.tolist()[0]}, candidates {cand.tolist()[0]}, V = {V}")

    _show("logit_stats: one pass over the target logits")
    t0 = time.perf_counter()
    st = ops.logit_stats(logits, cand, parents)
    dt = time.perf_counter() - t0
    for i in range(7):
        print(f"node {i}: argmax {int(st.argmax[0, i]):5d}  max {st.max_logit[0, i]:6.2f}  "
              f"lse {st.logsumexp[0, i]:6.2f}  H {st.entropy[0, i]:5.2f}  margin {st.margin[0, i]:5.2f}  "
              f"log p(cand|parent) {st.cand_logprob[0, i]:7.2f}")
    print(f"({dt * 1e3:.2f} ms)")

    _show("verify_tree, greedy (standard speculative decoding: lossless)")
    out = ops.verify_tree(cand, parents, target_argmax=st.argmax)
    print(f"accepted path {out.path.tolist()[0]}  accept_len {int(out.accept_len)}  next token {int(out.next_token)}")
    assert torch.equal(out.path, reference.verify_tree_ref(cand, parents, logits).path)

    _show("verify_tree, greedy with an arbiter that accepts node 6 at the mismatch")
    accept = torch.zeros(1, 7, dtype=torch.bool)
    accept[0, 6] = True
    out_a = ops.verify_tree(cand, parents, target_argmax=st.argmax, accept_draft=accept)
    print(f"accepted path {out_a.path.tolist()[0]}  consulted {out_a.consulted.nonzero()[:, 1].tolist()}  "
          f"arbiter-accepted {out_a.arbiter_accepted.nonzero()[:, 1].tolist()}  next token {int(out_a.next_token)}")

    _show("verify_tree, sampling at T = 0.3 (lossless speculative sampling, 5 draws)")
    for k in range(5):
        u = torch.rand(1, 7, generator=g)
        o = ops.verify_tree(cand, parents, logits, temperature=0.3, uniforms=u)
        print(f"draw {k}: path {[p for p in o.path.tolist()[0] if p >= 0]}  next token {int(o.next_token)}")

    _show("arbiter_score: a 2-layer GELU MLP over feature rows")
    feats = torch.stack([st.entropy[0], st.margin[0], st.cand_logprob[0], st.max_logit[0]], 1)  # [7, 4]
    w1, b1 = torch.randn(16, 4, generator=g) * 0.5, torch.zeros(16)
    w2, b2 = torch.randn(8, 16, generator=g) * 0.3, torch.zeros(8)
    wo, bo = torch.randn(8, generator=g), torch.zeros(1)
    score = ops.arbiter_score(feats, w1, b1, w2, b2, w_out=wo, b_out=bo)
    print("P(accept) per node:", [round(float(p), 3) for p in torch.sigmoid(score)])

    _show("kv_rollback: compact the accepted path in a [2, layers=2, B=1, H=2, S=16, D=4] cache")
    cache = torch.arange(16, dtype=torch.float32).view(1, 1, 1, 16, 1).expand(2, 2, 1, 2, 16, 4).contiguous()
    base = torch.tensor([5])  # the tree was written at slots 5..11
    new_len = ops.kv_rollback(cache, base, out_a.path)
    print(f"path {out_a.path.tolist()[0]} -> slots 5.. now hold {cache[0, 0, 0, 0, 5:12, 0].int().tolist()}, "
          f"new length {int(new_len)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
