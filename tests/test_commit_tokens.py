"""commit_tokens against its row-by-row reference: exact equality of seq, total and the counts."""

from __future__ import annotations

import pytest
import torch

from cospec_ext import ops, reference
from _trees import DEVICES, make_tree_inputs
from _compare import assert_equal


def round_inputs(B, N, S, V, gen, kind="random", p_match=0.7):
    """A real verification round: a tree walk's path and tokens, ragged row lengths."""
    cand, par, x = make_tree_inputs(kind, B, N, V, torch.float32, gen, p_match=p_match)
    v = reference.verify_tree_ref(cand, par, x)
    seq = torch.randint(0, V, (B, S), generator=gen)
    total = torch.randint(1, S - N + 1, (B,), generator=gen)
    return seq, total, cand, v.path, v.accept_len, v.next_token


def check(seq, total, cand, path, acc, nxt, eos, limit, device, validate=True):
    want_seq, want_total = seq.clone(), total.clone()
    want = reference.commit_tokens_ref(want_seq, want_total, cand, path, acc, nxt, eos, limit)
    d = lambda t: t.to(device)  # noqa: E731
    got_seq, got_total = d(seq.clone()), d(total.clone())
    got = ops.commit_tokens(got_seq, got_total, d(cand), d(path), d(acc), d(nxt), d(eos), limit, validate=validate)
    assert_equal("counts", got, want)
    assert_equal("total", got_total, want_total)
    assert_equal("seq", got_seq, want_seq)
    return want


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("B,N,kind", [(1, 1, "chain"), (1, 5, "chain"), (3, 9, "deep"), (8, 17, "random"),
                                      (33, 64, "wide"), (300, 6, "star")])
def test_random(B, N, kind, device, gen):
    V, S = 40, 96
    for p_match in (1.0, 0.6, 0.0):
        seq, total, cand, path, acc, nxt = round_inputs(B, N, S, V, gen, kind, p_match)
        for eos in (torch.zeros(0, dtype=torch.int64), torch.tensor([-1]), torch.randint(0, V, (3,), generator=gen)):
            for limit in (S, int(total.min()) + 2, int(total.max())):  # no cut, some rows cut, most cut
                check(seq, total, cand, path, acc, nxt, eos, limit, device)


@pytest.mark.parametrize("device", DEVICES)
def test_eos_and_limit_cases(device):
    """Hand-made rows: EOS first, EOS in the middle, EOS only past the limit, no room left."""
    cand = torch.tensor([[9, 5, 7, 3]] * 4)
    path = torch.tensor([[0, 1, 2, 3]] * 4)
    acc, nxt = torch.tensor([3, 3, 3, 3]), torch.tensor([8, 8, 8, 8])
    seq = torch.full((4, 12), -5, dtype=torch.int64)
    total = torch.tensor([2, 2, 6, 9])
    # tokens per row: 5 7 3 8; eos 7 -> rows keep 5 7 (finished) unless the limit comes first
    want = check(seq, total, cand, path, acc, nxt, torch.tensor([7]), 9, device)
    assert want.tolist() == [[2, 2, 2, 0], [1, 1, 1, 1], [3, 3, 3, 3]]
    want = check(seq, total, cand, path, acc, nxt, torch.tensor([5, 99]), 12, device)
    assert want[:2].tolist() == [[1, 1, 1, 1], [1, 1, 1, 1]]
    want = check(seq, total, cand, path, acc, nxt, torch.tensor([99]), 12, device)  # no EOS: limit only
    assert want[:2].tolist() == [[4, 4, 4, 3], [0, 0, 0, 1]]


@pytest.mark.parametrize("device", DEVICES)
def test_strided_arguments(device, gen):
    """seq a column slice of a wider buffer, total and candidates strided views."""
    B, N, S, V = 5, 7, 60, 30
    seq, total, cand, path, acc, nxt = round_inputs(B, N, S, V, gen)
    wide = torch.randint(0, V, (B, S + 9), generator=gen)
    tot2 = torch.stack([total, total], 1)
    cand_t = cand.t().contiguous().t()  # column-major
    want_wide, want_tot2 = wide.clone(), tot2.clone()
    want = reference.commit_tokens_ref(want_wide[:, 3:3 + S], want_tot2[:, 1], cand, path, acc, nxt,
                                       torch.tensor([4]), S - 2)
    d = lambda t: t.to(device)  # noqa: E731
    got_wide, got_tot2 = d(wide.clone()), d(tot2.clone())
    got = ops.commit_tokens(got_wide[:, 3:3 + S], got_tot2[:, 1], d(cand_t), d(path), d(acc), d(nxt),
                            d(torch.tensor([4])), S - 2)
    assert_equal("counts", got, want)
    assert_equal("seq buffer", got_wide, want_wide)
    assert_equal("total buffer", got_tot2, want_tot2)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_inputs(device):
    d = lambda t: t.to(device)  # noqa: E731
    seq, total = d(torch.zeros(2, 10, dtype=torch.int64)), d(torch.tensor([3, 4]))
    cand, path = d(torch.tensor([[1, 2, 3], [4, 5, 6]])), d(torch.tensor([[0, 1, -1], [0, -1, -1]]))
    acc, nxt, eos = d(torch.tensor([1, 0])), d(torch.tensor([7, 8])), d(torch.tensor([2]))
    with pytest.raises(TypeError, match="`seq` must be"):
        ops.commit_tokens(seq.int(), total, cand, path, acc, nxt, eos, 10)
    with pytest.raises(ValueError, match="`total`"):
        ops.commit_tokens(seq, total[:1], cand, path, acc, nxt, eos, 10)
    with pytest.raises(ValueError, match="`candidates`"):
        ops.commit_tokens(seq, total, cand[:, :2], path, acc, nxt, eos, 10)
    with pytest.raises(ValueError, match="`accept_len` must be in"):
        ops.commit_tokens(seq, total, cand, path, d(torch.tensor([3, 0])), nxt, eos, 10)
    with pytest.raises(ValueError, match="`path`"):
        ops.commit_tokens(seq, total, cand, path, d(torch.tensor([2, 0])), nxt, eos, 10)
    # room for one token only (total 9, limit 10): the one path entry it reads is still checked
    with pytest.raises(ValueError, match="`path`"):
        ops.commit_tokens(seq, d(torch.tensor([9, 4])), cand, d(torch.tensor([[0, 3, -1], [0, -1, -1]])), acc, nxt,
                          eos, 10)
    with pytest.raises(ValueError, match="no room"):
        ops.commit_tokens(seq, d(torch.tensor([9, 4])), cand, path, acc, nxt, eos, 20)
    with pytest.raises(TypeError, match="`limit`"):
        ops.commit_tokens(seq, total, cand, path, acc, nxt, eos, 10.0)
    with pytest.raises(RuntimeError, match="internal overlap"):
        ops.commit_tokens(d(torch.zeros(1, 10, dtype=torch.int64)).expand(2, 10), total, cand, path, acc, nxt, eos, 10)
    if seq.device.type == "cpu":  # the raw op: the CPU kernel checks values itself (also "cuda" stubbed)
        with pytest.raises(RuntimeError, match="accept_len"):
            torch.ops.cospec.commit_tokens(seq, total, cand, path, torch.tensor([3, 0]), nxt, eos, 10)
        with pytest.raises(RuntimeError, match="room"):
            torch.ops.cospec.commit_tokens(seq, torch.tensor([9, 4]), cand, path, acc, nxt, eos, 20)
        with pytest.raises(RuntimeError, match="path"):
            torch.ops.cospec.commit_tokens(seq, torch.tensor([9, 4]), cand, torch.tensor([[0, 3, -1], [0, -1, -1]]),
                                           acc, nxt, eos, 10)
    else:  # the CUDA kernel: a bad row anywhere, nothing written, every row kept 0, finished
        s2, t2 = seq.clone(), d(torch.tensor([9, 4]))
        out = torch.ops.cospec.commit_tokens(s2, t2, cand, path, acc, nxt, eos, 20)
        assert out[:2, 0].tolist() == [0, 1] and int(t2[0]) == 9 and int(s2[0].abs().sum()) == 0
    assert seq.abs().sum() == 0 and total.tolist() == [3, 4]  # nothing was written by a refused call


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("B,bad", [(3, 2), (300, 299), (300, 0)])
def test_raw_op_with_a_bad_row_writes_nothing(B, bad, device, gen):
    """One behaviour on both backends (issue 23): the raw op checks every row before it writes
    any, so a bad row (here: no room in `seq`) leaves every row's seq and total as they were.
    The CPU kernel raises, naming the row; the CUDA kernel cannot raise without a sync and
    reports every row kept 0, finished 1. Before, the CPU kernel committed rows 0..bad-1 and
    then raised."""
    N, S, V = 5, 40, 30
    seq, total, cand, path, acc, nxt = round_inputs(B, N, S, V, gen)
    total[bad] = S  # a full row: no room for its count >= 1 tokens
    d = lambda t: t.to(device)  # noqa: E731
    got_seq, got_total = d(seq.clone()), d(total.clone())
    args = (d(cand), d(path), d(acc), d(nxt), d(torch.tensor([99])), S + 10)
    if got_seq.device.type == "cpu":  # (the tensors' device: CPU too when CUDA is stubbed)
        with pytest.raises(RuntimeError, match=f"row {bad}:|`total`\\[{bad}\\]"):
            torch.ops.cospec.commit_tokens(got_seq, got_total, *args)
    else:
        counts = torch.ops.cospec.commit_tokens(got_seq, got_total, *args)
        assert_equal("counts", counts, torch.stack([torch.zeros(B, dtype=torch.int64),
                                                    torch.ones(B, dtype=torch.int64), acc]))
    assert_equal("seq", got_seq, seq)
    assert_equal("total", got_total, total)
    total[bad] = S - N  # the same call with the row fixed commits every row, like the reference
    check(seq, total, cand, path, acc, nxt, torch.tensor([99]), S, device, validate=False)
