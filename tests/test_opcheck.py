"""torch.library.opcheck on every op (schema, fake impl, autograd registration,
AOT dispatch), and ops under torch.compile(fullgraph=True)."""

from __future__ import annotations

import pytest
import torch

import cospec_ext  # noqa: F401
from cospec_ext import ops, reference
from _trees import DEVICES, make_tree_inputs


def samples(device):
    g = torch.Generator().manual_seed(0)
    cand, par, x = make_tree_inputs("random", 3, 9, 301, torch.float32, g)
    accept = torch.rand(3, 9, generator=g) < 0.3
    u = torch.rand(3, 9, generator=g)
    d = lambda t: t.to(device)  # noqa: E731
    cache = torch.randn(2, 2, 3, 2, 20, 8, generator=g)
    path = reference.verify_tree_ref(cand, par, x).path
    depth = torch.zeros(3, 9, dtype=torch.int64)
    for i in range(1, 9):
        depth[:, i] = depth.gather(1, par[:, i:i + 1])[:, 0] + 1
    wa, ba = torch.randn(50, 33, generator=g), torch.randn(50, generator=g)
    return {
        "verify_tree": [
            (d(cand), d(par), d(x), None, None, 0.0, None),
            (d(cand), d(par), None, d(x.argmax(-1)), d(accept), 0.0, None),
            (d(cand), d(par), d(x.bfloat16()), None, d(accept), 0.8, d(u)),
        ],
        "logit_stats": [(d(x), d(cand), d(par)), (d(x.half()), None, None)],
        "arbiter_score": [
            (d(torch.randn(5, 6)), d(torch.randn(8, 6)), d(torch.randn(8)), None, None, d(torch.randn(8)), d(torch.randn(1)), "gelu"),
            (d(torch.randn(5, 6).bfloat16()), d(torch.randn(8, 6)), d(torch.randn(8)), d(torch.randn(4, 8)), d(torch.randn(4)), d(torch.randn(4)), d(torch.randn(1)), "relu"),
        ],
        "kv_rollback": [(d(cache), d(torch.tensor([0, 5, 11])), d(path))],
        "tree_mask": [(d(torch.zeros(3, 1, 9, 40, dtype=torch.bool)), d(torch.tensor([0, 3, 1])),
                       d(torch.tensor([4, 20, 31])), d(torch.rand(3, 9, 9, generator=g) < 0.5)),
                      (d(torch.zeros(3, 1, 4, 40, dtype=torch.bool)), d(torch.tensor([0, 3, 1])),
                       d(torch.tensor([4, 20, 31])), d(torch.rand(1, 4, 9, generator=g) < 0.5))],
        "commit_tokens": [(d(torch.randint(0, 301, (3, 30), generator=g)), d(torch.tensor([2, 9, 20])), d(cand),
                           d(path), d(reference.verify_tree_ref(cand, par, x).accept_len),
                           d(torch.tensor([5, 6, 7])), d(torch.tensor([int(cand[0, 1])])), 27)],
        "linear_rows": [(d(torch.randn(5, 33, generator=g)), d(torch.randn(21, 33, generator=g)), None),
                        (d(torch.randn(3, 16, generator=g).bfloat16()), d(torch.randn(7, 16, generator=g).bfloat16()),
                         d(torch.randn(7, generator=g).bfloat16()))],
        "linear_packed": [(d(torch.randn(20, 33, generator=g)), d(ops.pack_weight(torch.randn(50, 33, generator=g))), 50,
                           d(torch.randn(50, generator=g))),
                          (d(torch.randn(3, 16, generator=g)), d(ops.pack_weight(torch.randn(7, 16, generator=g))), 7, None)],
        "tree_attention": [(d(torch.randn(2, 6, 5, 16, generator=g)), d(torch.randn(2, 2, 30, 16, generator=g)),
                            d(torch.randn(2, 2, 30, 16, generator=g)), d(torch.rand(2, 1, 5, 30, generator=g) < 0.5), 0.25),
                           (d(torch.randn(1, 2, 1, 8, generator=g)), d(torch.randn(1, 2, 7, 8, generator=g)),
                            d(torch.randn(1, 2, 7, 8, generator=g)), d(torch.ones(1, 1, 1, 7, dtype=torch.bool)), 1.0)],
        "linear_auto": [(d(torch.randn(20, 33, generator=g)), d(wa), d(ops.pack_weight(wa)), d(ba), 17),  # packed
                        (d(torch.randn(5, 33, generator=g)), d(wa), d(ops.pack_weight(wa)), None, 17),  # rows
                        (d(torch.randn(4, 33, generator=g).bfloat16()), d(wa.bfloat16()), None, None, 1)],
        "node_features": [
            (d(x), d(cand), d(par), d(depth), d(torch.randint(0, 3, (3, 9), generator=g)),
             d(torch.tensor([0, 4, 9])), d(torch.randn(3, 9, 301, generator=g)), int(depth.max())),
            (d(x.half()), d(cand), d(par), d(depth), d(torch.zeros(3, 9, dtype=torch.int64)),
             d(torch.tensor([1, 2, 3])), d(torch.randn(3, 9, 301, generator=g).half()), 2),
            (d(x), d(cand), d(par[:1]), d(depth[:1]), d(torch.zeros(1, 9, dtype=torch.int64)),  # one shared tree
             d(torch.tensor([0, 4, 9])), d(torch.randn(3, 9, 301, generator=g)), int(depth.max())),
        ],
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["verify_tree", "logit_stats", "arbiter_score", "kv_rollback", "node_features",
                                "commit_tokens", "tree_mask", "linear_rows", "linear_packed", "linear_auto",
                                "tree_attention"])
def test_opcheck(op, device):
    for args in samples(device)[op]:
        torch.library.opcheck(getattr(torch.ops.cospec, op).default, args)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    """logit_stats -> greedy verify_tree -> kv_rollback traced into one graph."""
    g = torch.Generator().manual_seed(1)
    cand, par, x = make_tree_inputs("chain", 2, 6, 500, torch.float32, g, p_match=0.8)
    cache = torch.randn(2, 2, 2, 32, 8, generator=g)
    base = torch.tensor([3, 10])

    def step(cand, par, x, cache, base):
        stats = ops.logit_stats(x, cand, par)
        out = ops.verify_tree(cand, par, target_argmax=stats.argmax)
        new_len = ops.kv_rollback(cache, base, out.path)
        return stats.entropy.sum() + stats.cand_logprob.sum(), out.next_token, new_len

    d = lambda t: t.to(device)  # noqa: E731
    eager_cache, comp_cache = d(cache.clone()), d(cache.clone())
    want = step(d(cand), d(par), d(x), eager_cache, d(base))
    compiled = torch.compile(step, fullgraph=True, backend="inductor")
    got = compiled(d(cand), d(par), d(x), comp_cache, d(base))
    torch.testing.assert_close(got[0], want[0])
    assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
    assert torch.equal(comp_cache, eager_cache)
