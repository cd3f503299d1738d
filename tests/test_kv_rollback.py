"""kv_rollback against the gather-then-write reference: exact equality of the cache."""

from __future__ import annotations

import pytest
import torch

from cospec_ext import ops, reference
from _trees import DEVICES, make_tree_inputs
from _compare import assert_equal

CACHE_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int8]


def random_paths(B, N, gen, kind="random", p_match=0.7):
    """Accepted paths of real tree walks (strictly increasing from the root, -1 padded)."""
    cand, par, x = make_tree_inputs(kind, B, N, 64, torch.float32, gen, p_match=p_match)
    return reference.verify_tree_ref(cand, par, x).path


def random_cache(lead, B, H, S, D, dtype, gen):
    c = torch.randn(*lead, B, H, S, D, generator=gen) * 50
    return c.to(dtype)


def check(cache, base_len, path, device):
    want_cache = cache.clone()
    want_len = reference.kv_rollback_ref(want_cache, base_len, path)
    got_cache = cache.to(device)
    got_len = ops.kv_rollback(got_cache, base_len.to(device), path.to(device))
    assert_equal("new_len", got_len, want_len)
    assert_equal("cache", got_cache, want_cache)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", CACHE_DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize(
    "lead,B,H,S,N,D,kind",
    [
        ((), 1, 1, 8, 1, 4, "chain"),
        ((2,), 3, 2, 40, 9, 3, "deep"),
        ((2, 3), 5, 2, 100, 33, 128, "random"),
        ((2, 2), 16, 1, 160, 128, 8, "wide"),
        ((2, 4), 4, 8, 300, 64, 64, "star"),
    ],
)
def test_random(lead, B, H, S, N, D, kind, dtype, device, gen):
    cache = random_cache(lead, B, H, S, D, dtype, gen)
    base_len = torch.randint(0, S - N + 1, (B,), generator=gen)  # ragged
    for p_match in (1.0, 0.6, 0.0):  # all-accept, mixed, all-reject
        check(cache, base_len, random_paths(B, N, gen, kind, p_match), device)


@pytest.mark.parametrize("device", DEVICES)
def test_overlapping_sources_and_destinations(device, gen):
    """Sources that are other entries' destinations: path [0, 2, 3, 5] moves 2->1, 3->2, 5->3."""
    cache = random_cache((2,), 2, 2, 12, 5, torch.float32, gen)
    path = torch.tensor([[0, 2, 3, 5, -1, -1], [0, 1, 2, 3, 4, 5]])
    check(cache, torch.tensor([3, 6]), path, device)
    check(cache, torch.tensor([0, 0]), torch.tensor([[0, -1, -1, -1, -1, -1], [0, 5, -1, -1, -1, -1]]), device)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_cache(device, gen):
    big = random_cache((2,), 4, 3, 50, 16, torch.float32, gen)
    views = {
        "s_slice": big[:, :, :, :40],  # fewer slots than allocated
        "batch_step": big[:, ::2],
        "permuted": big.permute(0, 2, 1, 3, 4).contiguous().permute(0, 2, 1, 3, 4),  # H outer to B
    }
    for name, view in views.items():
        B = view.shape[-4]
        path = random_paths(B, 10, gen)
        base_len = torch.randint(0, 30, (B,), generator=gen)
        want = view.clone()
        want_len = reference.kv_rollback_ref(want, base_len, path)
        got = view.to(device)  # same strides on the CPU: the op runs on the view itself
        got_len = ops.kv_rollback(got, base_len.to(device), path.to(device))
        assert_equal(f"{name} cache", got, want)
        assert_equal(f"{name} new_len", got_len, want_len)
    # writes through a view land in the base tensor, leaving the rest untouched
    before = big.clone()
    view = big[:, :, :, :40]
    ops.kv_rollback(view, torch.tensor([5, 5, 5, 5]), torch.tensor([[0, 3, -1, -1]] * 4))
    assert torch.equal(big[:, :, :, 40:], before[:, :, :, 40:])
    assert torch.equal(big[:, :, :, 6], before[:, :, :, 8])
