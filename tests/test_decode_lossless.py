"""mode="spd" at temperature 0 is lossless: decode's sequences equal target.generate()'s
token for token (batched and unbatched, chains, static and dynamic trees, Llama and
Qwen2, several seeds, drafts that always / sometimes / never agree)."""

import pytest
import torch

import cospec_ext
from _models import EOS, PAD, first_layers, generate_greedy, prompts, tiny

TREES = ["chain:1", "chain:4", "chain:7;fixed", "static:-1,0,0,1,1,2,3", "tree:3,2", "tree:4,3,6;fixed",
         "chain:3;conf=0.3"]


def _check(target, draft, ids, mask, tree, max_new=24, mode="spd", eos=EOS):
    ref = generate_greedy(target, ids, mask, max_new, eos=eos)
    out = cospec_ext.decode(target, draft, ids, mask, mode=mode, tree=tree, max_new_tokens=max_new,
                            eos_token_id=eos, pad_token_id=PAD)
    assert out.sequences.shape == ref.shape, f"{tree}: shape {list(out.sequences.shape)} vs generate {list(ref.shape)}"
    diff = (out.sequences != ref).nonzero()
    assert diff.numel() == 0, f"{tree}: first mismatch at (row, col) {diff[0].tolist()}"
    return out


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("tree", TREES)
def test_spd_equals_generate(arch, tree):
    target = tiny(arch, layers=3, seed=1)
    draft = first_layers(target, 1)  # agrees sometimes
    for seed in range(3):
        ids, mask = prompts(4, seed)
        _check(target, draft, ids, mask, tree)
        _check(target, draft, ids[1:2, -int(mask[1].sum()):], None, tree)  # unbatched, no padding


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_draft_that_always_agrees_accepts_every_node(arch):
    target = tiny(arch, layers=2, seed=2)
    ids, mask = prompts(3, 5)
    out = _check(target, target, ids, mask, "chain:5;fixed", max_new=31, eos=None)
    # every round accepts the whole chain: 5 drafted tokens + the bonus token
    assert out.stats.mean_accept_len == pytest.approx(6.0)
    assert out.stats.target_forwards == 1 + 5  # prefill + 30 tokens / 6 per round


def test_draft_that_never_agrees():
    target = tiny("llama", layers=2, seed=3)
    draft = tiny("llama", layers=1, seed=4)
    ids, mask = prompts(3, 6)
    for tree in ("chain:4;fixed", "tree:3,3;fixed", "chain:4"):
        out = _check(target, draft, ids, mask, tree)
        assert out.stats.mean_accept_len < 1.5


def test_rows_finish_at_different_times():
    """EOS in some rows early: finished rows are padded like generate() pads them."""
    target = tiny("llama", layers=2, seed=7)
    ids, mask = prompts(6, 8)
    free = generate_greedy(target, ids, mask, 30, eos=None)
    eos = int(free[0, ids.shape[1] + 4])  # a token row 0 emits early
    out = _check(target, first_layers(target, 1), ids, mask, "chain:4", max_new=30, eos=eos)
    lens = out.stats.new_tokens
    assert min(lens) < max(lens), f"rows should finish at different times, got {lens}"


def test_target_mode_equals_generate():
    target, draft = tiny("llama", 3, seed=9), tiny("llama", 1, seed=10)
    ids, mask = prompts(4, 11)
    out = _check(target, draft, ids, mask, "chain:4", mode="target")
    assert out.stats.draft_forwards == 0 and out.stats.target_forwards == out.stats.rounds + 1


def test_draft_mode_equals_draft_generate():
    draft = tiny("llama", 1, seed=10)
    ids, mask = prompts(4, 11)
    ref = generate_greedy(draft, ids, mask, 24)
    out = cospec_ext.decode(None, draft, ids, mask, mode="draft", max_new_tokens=24, eos_token_id=EOS,
                            pad_token_id=PAD)
    assert torch.equal(out.sequences, ref)
    assert out.stats.draft_forwards == out.stats.rounds + 1 and out.stats.target_forwards == 0


def test_eager_attention_and_max_new_tokens_one():
    target = tiny("llama", 2, seed=12, attn="eager")
    ids, mask = prompts(3, 13)
    _check(target, first_layers(target, 1), ids, mask, "tree:3,2", max_new=17)
    _check(target, first_layers(target, 1), ids, mask, "chain:4", max_new=1)


@pytest.mark.parametrize("lag", [(45, 1, 33), (2, 2, 2), (1, 1, 1)])
def test_catch_up_over_several_ragged_chunks(lag):
    """The draft catches up on 45, 1 and 33 tokens in chunks of 32: a row done in the first
    chunk keeps its root logits in the second (it once indexed position -1), and every row's
    logits equal a full forward of its sequence. Equal lags take the one-forward path (2: a
    round that accepted every level; 1: the usual round)."""
    from cospec_ext.engine.adapter import as_adapter
    from cospec_ext.engine.draft import Drafter
    from cospec_ext.engine.runner import ModelRunner
    from cospec_ext.engine.tree import parse_tree

    model = tiny("llama", layers=2, seed=9)
    ids, mask = prompts(3, 4, min_len=4, max_len=6)
    B, P = ids.shape
    pad = (mask == 0).sum(1)
    lags = torch.tensor(lag)
    spec = parse_tree("chain:4")
    S = P + int(lags.max()) + spec.max_expanded + 2  # as tight as the engine sizes it
    g = torch.Generator().manual_seed(3)
    seq = torch.zeros(B, S, dtype=torch.int64)
    seq[:, :P] = ids
    seq[:, P:P + int(lags.max())] = torch.randint(4, 64, (B, int(lags.max())), generator=g)
    total = P + lags
    with torch.inference_mode():
        runner = ModelRunner(as_adapter(model), B, S, max(P, spec.max_expanded, 32), pad)
        runner.prefill(ids)
        dlen = torch.full((B,), P)
        got = Drafter(runner, spec).catch_up(seq, dlen, dlen.clone(), total, total.clone())  # [B, V]
        for b in range(B):
            row = seq[b, int(pad[b]):int(total[b])][None]
            want = model(input_ids=row).logits[0, -1]
            err = (got[b] - want).abs().max().item()
            assert err < 1e-4, f"row {b} (lag {int(lags[b])}): root logits differ by {err:.2e}"
