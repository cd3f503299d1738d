"""Every backend (the CPU kernels always, CUDA when present) against the float64 reference on
special rows (issue 23): some NaN, NaN with +inf, one / several +inf, all -inf, a late huge
max, a huge max first, ties, a partly masked row; tiny and huge temperatures; V not a multiple
of the vector width; unaligned strided views. Comparing each backend with the reference (not
CPU with CUDA) is what catches a bug the two kernels share.

Bugs each test here caught before its fix (CPU kernels):
  test_late_huge_max_entropy*        entropy 0 instead of ln 2 (online softmax rescale, 0 * -inf)
  test_sampling_subtracts_the_max_before_scaling   x = 1e38 at T = 0.1 rejected (x / T = inf)
CUDA only (the CPU kernel was right): test_sampling_some_nan_rows (a NaN partial sum dropped).
"""

from __future__ import annotations

import math

import pytest
import torch

from cospec_ext import ops, reference
from cospec_ext.reference import verify_tree_ref
from _compare import assert_equal
from _trees import DEVICES

NAN, INF = float("nan"), float("inf")


def special_rows(V: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """name -> one float32 row [V] (V >= 16)."""
    r = lambda: torch.randn(V, generator=gen) * 3  # noqa: E731
    rows = {"random": r()}
    x = r()
    x[[5, 9]] = NAN
    rows["some nan"] = x
    x = r()
    x[2], x[11] = INF, NAN
    rows["nan and +inf"] = x
    x = r()
    x[7] = INF
    rows["one +inf"] = x
    x = r()
    x[[8, 3, V - 1]] = INF
    rows["several +inf"] = x
    rows["all -inf"] = torch.full((V,), -INF)
    x = r()
    x[torch.rand(V, generator=gen) < 0.5] = -INF
    x[1] = 0.5
    rows["some -inf"] = x
    x = torch.zeros(V)
    x[-2:] = 3e38  # the max arrives last, after a long finite run: entropy ln 2
    rows["late huge max"] = x
    x = r() * 1e37
    x[4] = 3.3e38
    rows["huge max first"] = x
    x = r().round().clamp(-2, 2)  # many ties of the max: the lowest index wins
    rows["ties"] = x
    return rows


def logits_view(rows: list[torch.Tensor], device: str, strided: bool) -> torch.Tensor:
    """[1, n, V] on `device`; strided: rows of a wider buffer, offset by one element (not
    16-byte aligned, not contiguous)."""
    x = torch.stack(rows)[None]
    if not strided:
        return x.to(device)
    buf = torch.zeros(1, x.shape[1], x.shape[2] + 5, device=device)
    buf[..., 1:x.shape[2] + 1] = x.to(device)
    return buf[..., 1:x.shape[2] + 1]


CASES = [(16, False), (77, True), (5003, False), (5003, True)]  # V, strided (77, 5003: not multiples of 8/16)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("V,strided", CASES)
def test_logit_stats_special_rows(V, strided, device):
    gen = torch.Generator().manual_seed(V)
    rows = special_rows(V, gen)
    x = logits_view(list(rows.values()), device, strided)
    n = x.shape[1]
    cand = torch.randint(0, V, (1, n), generator=gen)
    par = (torch.arange(n) - 1)[None]
    got = ops.logit_stats(x, cand.to(device), par.to(device))
    want = reference.logit_stats_ref(x.cpu(), cand, par)
    for k, name in enumerate(rows):
        assert int(got.argmax[0, k]) == int(want.argmax[0, k]), name
        for f in ("max_logit", "logsumexp", "entropy", "margin", "cand_logprob"):
            torch.testing.assert_close(getattr(got, f)[0, k].cpu(), getattr(want, f)[0, k], rtol=1e-5, atol=2e-4,
                                       equal_nan=True, msg=lambda m: f"{name} {f}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("V,big", [(70002, 1e34), (70002, 3e38), (5003, 3e38), (300, 3e38)])
def test_late_huge_max_entropy(V, big, device):
    """Zeros, then two logits `big` at the end: entropy ln 2 (issue 23: the CPU kernel gave 0,
    e * (u + d * s) with e = 0 and d * s = -inf)."""
    x = torch.zeros(2, 1, V)
    x[0, 0, -2:] = big
    x[1, 0, -1] = x[1, 0, -3] = big  # the last two maxima apart
    st = ops.logit_stats(x.to(device))
    torch.testing.assert_close(st.entropy.cpu(), torch.full((2, 1), math.log(2)), rtol=1e-5, atol=1e-5)
    assert st.argmax[:, 0].tolist() == [V - 2, V - 3]
    torch.testing.assert_close(st.entropy.cpu(), reference.logit_stats_ref(x).entropy, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_late_huge_max_entropy_in_node_features(device):
    """t_entropy (col 2), d_entropy (7) and tc_entropy (14) of late-huge-max rows: ln 2, like
    the reference (the CPU kernel gave 0)."""
    V, N = 5003, 3
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(1, N, V, generator=gen) * 0.1
    x[0, :, -2:] = 3e38
    d = torch.randn(1, N, V, generator=gen) * 0.1  # the draft's rows: the same two maxima (KL 0)
    d[0, :, -2:] = 3e38
    cand, par = torch.tensor([[0, V - 1, 3]]), torch.tensor([[-1, 0, 1]])
    depth, rank = torch.tensor([[0, 1, 2]]), torch.zeros(1, N, dtype=torch.int64)
    ng = torch.tensor([5])
    got = ops.node_features(x.to(device), *(t.to(device) for t in (cand, par, depth, rank, ng)), d.to(device), 2)
    want = reference.node_features_ref(x, cand, par, depth, rank, ng, d, 2)
    torch.testing.assert_close(got.cpu(), want, rtol=2e-4, atol=2e-4)
    for col in (2, 14):
        assert abs(float(got[0, 2, col]) - math.log(2)) < 1e-5, col
    assert abs(float(got[0, 2, 7]) - math.log(2)) < 1e-5


def _chain_through(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A chain whose child tokens are the float64 argmax of their parent (the first NaN wins,
    like torch.argmax): the greedy walk visits every row until a row's argmax is the last."""
    n = len(rows)
    par = (torch.arange(n) - 1)[None]
    cand = torch.zeros(1, n, dtype=torch.int64)
    for i in range(1, n):
        cand[0, i] = int(rows[i - 1].double().argmax())
    return cand, par


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("V,strided", CASES)
def test_greedy_walk_visits_every_special_row(V, strided, device):
    gen = torch.Generator().manual_seed(V + 1)
    rows = list(special_rows(V, gen).values())
    x = logits_view(rows, device, strided)
    cand, par = _chain_through(rows)
    acc = torch.rand(1, len(rows), generator=gen) < 0.3
    for accept in (None, acc):
        want = verify_tree_ref(cand, par, x.cpu(), accept)
        assert int(want.accept_len[0]) == len(rows) - 1  # the walk reached the last row
        got = ops.verify_tree(cand.to(device), par.to(device), x, None if accept is None else accept.to(device))
        for f, g, w in zip(want._fields, got, want):
            assert_equal(f, g, w)


def _residual_ok(x_row, T, kids, u0, tok) -> bool:
    """tok is the float64 inverse-CDF draw of the residual within the CDF rounding of a
    float32 running sum over V tokens (at most V * 2^-24 of the total: the CPU kernel's
    sequential cumsum; a near-uniform row at huge T over V = 5003 drifts by ~1e-4)."""
    tol = max(1e-5, x_row.numel() * 2.0**-24)
    q = torch.softmax(x_row.double() / T, -1)
    q[sorted(set(kids))] = 0.0
    if not 0 <= tok < q.numel() or q[tok] <= 0:
        return False
    cdf = torch.cumsum(q, 0)
    target = u0 * float(q.sum())
    return float(cdf[tok] - q[tok]) - tol <= target <= float(cdf[tok]) + tol


def _check_sampling(cand, par, x, T, u, device):
    want = verify_tree_ref(cand, par, x.cpu(), None, T, u)
    got = ops.verify_tree(cand.to(device), par.to(device), x, None, T, u.to(device))
    for f in ("path", "accept_len", "consulted", "arbiter_accepted"):
        assert_equal(f, getattr(got, f), getattr(want, f))
    for b in (got.next_token.cpu() != want.next_token).nonzero().flatten().tolist():
        cur = int(want.path[b, int(want.accept_len[b])])
        kids = [int(cand[b, i]) for i in range(cand.shape[1]) if int(par[b, i]) == cur]
        assert _residual_ok(x[b, cur].cpu(), T, kids, float(u[b, 0]), int(got.next_token[b])), \
            f"row {b}: next_token {int(got.next_token[b])}, reference {int(want.next_token[b])}"
    return got, want


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("V,strided", CASES)
@pytest.mark.parametrize("T", [1e-5, 1e-3, 0.1, 1.0, 1e4, 1e30])
def test_sampling_at_special_rows(V, strided, T, device):
    """One sequence per special row, the row at its root; three children: the row's argmax,
    a random token, the argmax again (a repeated token). Path, accept length and flags equal
    the reference; next_token is the reference's residual draw (a CDF neighbour within
    rounding)."""
    gen = torch.Generator().manual_seed(V + 2)
    rows = list(special_rows(V, gen).values())
    B, N = len(rows), 4
    x = torch.zeros(B, N, V)
    x[:, 0] = torch.stack(rows)
    x[:, 1:] = torch.randn(B, N - 1, V, generator=gen)
    if strided:
        buf = torch.zeros(B, N, V + 3, device=device)
        buf[..., 1:V + 1] = x.to(device)
        xd = buf[..., 1:V + 1]
    else:
        xd = x.to(device)
    par = torch.tensor([[-1, 0, 0, 0]] * B)
    am = torch.stack([r.double().argmax() for r in rows])
    cand = torch.stack([am, am, torch.randint(0, V, (B,), generator=gen), am], 1)
    for seed in range(3):
        u = torch.rand(B, N, generator=torch.Generator().manual_seed(seed))
        _check_sampling(cand, par, xd, T, u, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("V", [50, 5003])
def test_sampling_some_nan_rows(V, device):
    """A row with some NaN logits: Z is NaN, every child is rejected and next_token is the
    largest non-NaN logit not among the children, like the reference (issue 23: CUDA dropped
    the NaN partial sums and sampled from a finite distribution)."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(4, 3, V, generator=gen)
    x[0, 0, 5] = NAN  # the case: V = 50, x[5] = NaN, T = 0.5
    x[1, 0, V - 1] = NAN  # in the tail, the rest finite
    x[2, 0] = -INF
    x[2, 0, 3] = NAN  # a NaN among -inf only (a thread with nothing else to add)
    x[3, 0, [0, V // 2]] = NAN
    par = torch.tensor([[-1, 0, 0]] * 4)
    cand = torch.tensor([[int(x[b, 0].nan_to_num(-INF).argmax()), 1, 2] for b in range(4)])
    for T in (0.5, 1.0, 0.05):
        u = torch.rand(4, 3, generator=gen)
        got, want = _check_sampling(cand, par, x.to(device), T, u, device)
        assert want.accept_len.tolist() == [0, 0, 0, 0]
        assert_equal("next_token", got.next_token, want.next_token)
        assert int(got.next_token[2]) == 0  # the -inf row: the lowest free non-NaN token


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("T", [0.1, 0.01, 1e-5 * 1.01])
def test_sampling_subtracts_the_max_before_scaling(T, device):
    """x = 1e38 at T = 0.1 (x / T > FLT_MAX): p = 1 for that token, so the child holding it is
    accepted, like the float64 reference (issue 23: the CPU kernel divided by T first, every
    p was NaN and the child was rejected)."""
    gen = torch.Generator().manual_seed(8)
    V = 40
    x = torch.randn(3, 3, V, generator=gen)
    x[0, 0, 7] = 1e38
    x[1, 0, 2] = 3e38
    x[1, 0, 9] = -3e38
    x[2, 0, 4] = -1e38  # a huge negative logit elsewhere, the max ordinary
    par = torch.tensor([[-1, 0, 1]] * 3)
    cand = torch.tensor([[5, 7, 1], [5, 2, 1], [5, int(x[2, 0].argmax()), 1]])
    u = torch.rand(3, 3, generator=gen) * 0.99
    u[0, 1] = 0.999
    got, want = _check_sampling(cand, par, x.to(device), T, u, device)
    assert want.path[:2, 1].tolist() == [1, 1] and got.path[:2, 1].tolist() == [1, 1]
