"""Statistical test: tokens emitted by verify_tree at temperature T follow the target.

Many independent draws run as one batch (each row its own uniforms). For the first
emitted token (the first accepted candidate, else next_token) the empirical counts
over R draws must match R * p, p = softmax(logits[root] / T), by Pearson's
chi-square test: the statistic must stay below the 0.999 quantile of chi2(V - 1),
so a correct kernel fails with probability 1e-3 per check, and the fixed seed makes
the outcome reproducible. A second check conditions on the first token being the
first draft and tests the next token against softmax(logits[node 1] / T).
"""

from __future__ import annotations

import pytest
import torch

from cospec_ext import ops
from _trees import DEVICES

R = 40_000
CHI2_999 = {7: 24.322, 5: 20.515}  # 0.999 quantiles of chi2(df)


def chi2_stat(tokens: torch.Tensor, p: torch.Tensor) -> float:
    counts = torch.bincount(tokens, minlength=p.numel()).double()
    expected = counts.sum() * p.double()
    return float(((counts - expected) ** 2 / expected).sum())


def emitted_tokens(out, cand):
    """First two emitted tokens per row (second is -1 when only one was emitted)."""
    B = cand.shape[0]
    rows = torch.arange(B)
    first = torch.where(out.accept_len >= 1, cand[rows, out.path[:, 1].clamp(min=0)], out.next_token)
    second_node = out.path[:, 2].clamp(min=0)
    second = torch.where(out.accept_len >= 2, cand[rows, second_node], out.next_token)
    second = torch.where(out.accept_len >= 1, second, torch.full_like(second, -1))
    return first, second


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "name,parents,ranks",
    [
        ("chain", [-1, 0, 1, 2], [0, 0, 1, 0]),
        ("tree", [-1, 0, 0, 0, 1, 1], [0, 0, 1, 0, 0, 2]),  # nodes 1 and 3 share a token
    ],
)
@pytest.mark.parametrize("temperature", [0.7, 1.0])
def test_emitted_tokens_follow_target(name, parents, ranks, temperature, device):
    """ranks[i]: node i holds the ranks[i]-th most likely token after its parent."""
    g = torch.Generator().manual_seed(7)
    V, N = 8, len(parents)
    logits = torch.randn(N, V, generator=g) * 1.2
    order = logits.argsort(-1, descending=True)
    cands = [0] + [int(order[parents[i], ranks[i]]) for i in range(1, N)]
    x = logits.expand(R, N, V).contiguous()
    par = torch.tensor(parents).expand(R, N).contiguous()
    cand = torch.tensor(cands).expand(R, N).contiguous()
    u = torch.rand(R, N, generator=g)
    out = ops.verify_tree(cand.to(device), par.to(device), x.to(device), temperature=temperature,
                          uniforms=u.to(device))
    out = type(out)(*(t.cpu() for t in out))
    first, second = emitted_tokens(out, cand)
    p_root = torch.softmax(logits[0] / temperature, -1)
    stat = chi2_stat(first, p_root)
    assert stat < CHI2_999[V - 1], f"{name}: first token chi2 = {stat:.1f} (df {V - 1})"
    # Given that the first emitted token is the first child's, the next token follows
    # the target after node 1 (draft accepted => the walk continues from node 1).
    took_node1 = (out.accept_len >= 1) & (out.path[:, 1] == 1)
    p_node1 = torch.softmax(logits[1] / temperature, -1)
    stat2 = chi2_stat(second[took_node1], p_node1)
    assert took_node1.sum() > 5000
    assert stat2 < CHI2_999[V - 1], f"{name}: second token chi2 = {stat2:.1f} (df {V - 1})"


def test_greedy_draft_is_lossless_at_low_temperature():
    """As T -> 0 sampling verification agrees with greedy verification."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(64, 6, 50, generator=g) * 5
    par = torch.tensor([-1, 0, 1, 2, 3, 4]).expand(64, 6).contiguous()
    cand = torch.cat([torch.zeros(64, 1, dtype=torch.long), x.argmax(-1)[:, :-1]], 1)
    greedy = ops.verify_tree(cand, par, x)
    cold = ops.verify_tree(cand, par, x, temperature=1e-3, uniforms=torch.rand(64, 6, generator=g) * 0.999)
    assert torch.equal(greedy.path, cold.path) and torch.equal(greedy.next_token, cold.next_token)
