"""Edge cases the kernels, the references and decode must agree on (issue 10): tiny
temperatures are greedy everywhere; a sampled token is always in [0, V), whatever the
logits (NaN, -inf rows, logits so large that x / T overflows float32); NaN / +inf / fully
masked rows have defined statistics; a cache with internal overlap is refused; validation
reads the device once."""

from __future__ import annotations

import pytest
import torch

import cospec_ext
from cospec_ext import ops, reference
from cospec_ext.reference import verify_tree_ref
from _models import EOS, PAD, prompts, tiny
from _trees import DEVICES, make_tree_inputs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T", [1e-40, 1e-20, 1e-7, 9.9e-6])
def test_tiny_temperatures_are_greedy(T, device):
    """Before: T = 1e-40 emitted next_token = -1 on the CPU (1/T overflowed float)."""
    g = torch.Generator().manual_seed(0)
    cand, par, x = make_tree_inputs("random", 5, 9, 50, torch.float32, g, p_match=0.6)
    u = torch.rand(5, 9, generator=g)
    acc = torch.rand(5, 9, generator=g) < 0.3
    d = lambda t: t.to(device)  # noqa: E731
    for accept in (None, acc):
        greedy = verify_tree_ref(cand, par, x, accept)
        dacc = None if accept is None else d(accept)
        for out in (ops.verify_tree(d(cand), d(par), d(x), dacc), ops.verify_tree(d(cand), d(par), d(x), dacc, T, d(u)),
                    ops.verify_tree(d(cand), d(par), d(x), dacc, T), verify_tree_ref(cand, par, x, accept, T, u)):
            for got, want in zip(out, greedy):
                assert torch.equal(got.cpu(), want)


def test_temperature_at_the_floor_samples():
    g = torch.Generator().manual_seed(1)
    cand, par, x = make_tree_inputs("chain", 3, 5, 20, torch.float32, g, p_match=0.0)
    with pytest.raises(ValueError, match="uniforms"):
        ops.verify_tree(cand, par, x, temperature=ops.MIN_TEMPERATURE)


def test_decode_with_a_tiny_temperature_is_greedy():
    target, draft = tiny("llama", 2, seed=3), tiny("llama", 1, seed=4)
    ids, mask = prompts(3, seed=5)
    common = dict(max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD, tree="chain:3")
    want = cospec_ext.decode(target, draft, ids, mask, mode="spd", **common).sequences
    for T in (1e-30, 1e-6):
        got = cospec_ext.decode(target, draft, ids, mask, mode="spd", temperature=T, seed=0, **common).sequences
        assert torch.equal(got, want)


@pytest.mark.parametrize("device", DEVICES)
def test_sampled_tokens_stay_in_the_vocabulary(device):
    """Rows whose residual has no token with mass: an enormous logit (x / T overflows
    float32: the kernel's softmax is NaN), an all-NaN row, an all -inf row. next_token is
    the largest non-NaN logit not among the rejected children (0 if every logit is NaN),
    like the float64 reference, never -1."""
    V, N = 20, 4
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, N, V, generator=g)
    par = torch.tensor([[-1, 0, 1, 2]] * 3)
    cand = torch.tensor([[5, 3, 4, 6]] * 3)  # the root's child holds token 3
    x[0, 0, 7] = 1e38
    x[1, 0] = float("nan")
    x[2, 0] = float("-inf")
    u = torch.rand(3, N, generator=g)
    d = lambda t: t.to(device)  # noqa: E731
    out = ops.verify_tree(d(cand), d(par), d(x), None, 0.1, d(u))
    ref = verify_tree_ref(cand, par, x, None, 0.1, u)
    assert out.next_token.tolist() == [7, 0, 0] == ref.next_token.tolist()
    assert out.accept_len.tolist() == [0, 0, 0] == ref.accept_len.tolist()
    cand[2, 1] = 0  # the -inf row's first free token is then 1
    out = ops.verify_tree(d(cand), d(par), d(x), None, 0.1, d(u))
    assert int(out.next_token[2]) == 1 == int(verify_tree_ref(cand, par, x, None, 0.1, u).next_token[2])


def test_kv_rollback_refuses_a_cache_with_internal_overlap():
    """A stride-0 expanded batch (or head) dim: several work items would write the same bytes."""
    base = torch.randn(2, 1, 2, 8, 4)
    path = torch.tensor([[0, 2, -1], [0, 1, 2], [0, -1, -1]])
    for cache in (base.expand(2, 3, 2, 8, 4), torch.randn(2, 3, 1, 8, 4).expand(2, 3, 4, 8, 4)):
        with pytest.raises(ValueError, match="`cache` has internal overlap"):
            ops.kv_rollback(cache, torch.tensor([1, 2, 3]), path)
        with pytest.raises(RuntimeError, match="`cache` has internal overlap"):  # the kernel's own check
            torch.ops.cospec.kv_rollback(cache, torch.tensor([1, 2, 3]), path)
    view = torch.randn(2, 3, 2, 16, 4)[:, :, :, ::2]  # strided but not overlapping: fine
    ops.kv_rollback(view, torch.tensor([1, 2, 3]), path)


def test_validation_reads_the_device_once(monkeypatch):
    """Each op's value checks cross to the host once (one sync on CUDA): one _host transfer,
    and no other scalar read (bool(t), int(t), t.item()) while validating valid inputs."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from cospec_ext import _validate

    calls, inside = [], [False]
    real_host = _validate._host

    def host(flags):
        calls.append(len(flags))
        inside[0] = True
        try:
            return real_host(flags)
        finally:
            inside[0] = False

    class ScalarReads(TorchDispatchMode):
        reads = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default and not inside[0]:
                ScalarReads.reads += 1
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(_validate, "_host", host)
    g = torch.Generator().manual_seed(3)
    cand, par, x = make_tree_inputs("random", 3, 7, 40, torch.float32, g)
    u = torch.rand(3, 7, generator=g)
    out = verify_tree_ref(cand, par, x)
    cache = torch.randn(2, 3, 2, 16, 4)
    depth = torch.zeros(3, 7, dtype=torch.int64)
    runs = {
        "verify_tree": lambda: ops.verify_tree(cand, par, x, None, 0.7, u),
        "logit_stats": lambda: ops.logit_stats(x, cand, par),
        "kv_rollback": lambda: ops.kv_rollback(cache, torch.tensor([1, 2, 3]), out.path),
        "node_features": lambda: ops.node_features(x, cand, par, depth, depth, torch.zeros(3, dtype=torch.int64), x, 2),
    }
    for name, fn in runs.items():
        calls.clear()
        ScalarReads.reads = 0
        with ScalarReads():
            fn()
        assert len(calls) == 1, f"{name}: {len(calls)} host transfers"
        assert ScalarReads.reads == 0, f"{name}: {ScalarReads.reads} scalar reads besides the transfer"


SPECIAL_ROWS = {  # name -> (row builder over V, expected argmax)
    "nan": (lambda x: x.index_fill_(0, torch.tensor([5, 9]), float("nan")), 5),
    "nan and +inf": (lambda x: x.index_fill_(0, torch.tensor([2]), float("inf")).index_fill_(
        0, torch.tensor([11]), float("nan")), 11),
    "one +inf": (lambda x: x.index_fill_(0, torch.tensor([7]), float("inf")), 7),
    "two +inf": (lambda x: x.index_fill_(0, torch.tensor([8, 3]), float("inf")), 3),
    "all -inf": (lambda x: x.fill_(-float("inf")), 0),
    "ties": (lambda x: x.round_().clamp_(-1, 1), None),  # argmax: the first 1 (the reference's)
    # the max arrives last, after a finite run (issue 23: the CPU kernel's entropy was 0)
    "late huge": (lambda x: x.zero_().index_fill_(0, torch.tensor([x.numel() - 2, x.numel() - 1]), 3e38), -2),
    "huge": (lambda x: x.mul_(1e37).index_fill_(0, torch.tensor([4]), 3.3e38), 4),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("V,strided", [(16, False), (3000, False), (3001, True)])
def test_logit_stats_of_nan_and_inf_rows(V, strided, device):
    """A NaN propagates (argmax: the first NaN, like torch.argmax), a +inf gives +inf max and
    logsumexp and NaN entropy, a fully masked row -inf / entropy 0; kernel == reference (rows
    long enough for the vector paths and short ones)."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(len(SPECIAL_ROWS) + 1, 2, V, generator=g)
    for r, (make, _) in enumerate(SPECIAL_ROWS.values()):
        make(x[r, 1])
    cand = torch.randint(0, V, (x.shape[0], 2), generator=g)
    par = torch.tensor([[-1, 0]] * x.shape[0])
    xd = x.to(device)
    if strided:  # an unaligned view with a row stride != V
        buf = torch.zeros(*x.shape[:2], V + 3, device=device)
        buf[..., 1:V + 1] = xd
        xd = buf[..., 1:V + 1]
    got, want = ops.logit_stats(xd, cand.to(device), par.to(device)), reference.logit_stats_ref(x, cand, par)
    for r, (name, (_, amax)) in enumerate(SPECIAL_ROWS.items()):
        amax = int(want.argmax[r, 1]) if amax is None else amax % V
        assert int(got.argmax[r, 1]) == amax == int(want.argmax[r, 1]), name
    for f in ("max_logit", "logsumexp", "entropy", "margin", "cand_logprob"):
        torch.testing.assert_close(getattr(got, f).cpu(), getattr(want, f), rtol=1e-5, atol=1e-4, equal_nan=True,
                                   msg=lambda m: f"{f}: {m}")
    late = list(SPECIAL_ROWS).index("late huge")
    assert abs(float(got.entropy[late, 1]) - 0.6931472) < 1e-5  # ln 2
    assert torch.isfinite(got.logsumexp[-2, 1])  # "huge": finite logits near FLT_MAX keep a finite logsumexp


@pytest.mark.parametrize("device", DEVICES)
def test_greedy_verify_on_nan_rows_takes_the_first_nan(device):
    g = torch.Generator().manual_seed(5)
    cand, par, x = make_tree_inputs("chain", 3, 4, 30, torch.float32, g, p_match=1.0)
    x[0, 0, 12] = float("nan")  # the root's argmax is then 12, which no child holds
    x[1, 1] = float("nan")  # node 1's row: argmax 0
    out = ops.verify_tree(cand.to(device), par.to(device), x.to(device))
    ref = verify_tree_ref(cand, par, x)
    for a, b in zip(out, ref):
        assert torch.equal(a.cpu(), b)
    assert int(out.next_token[0]) == 12
