"""End-to-end CPU decoding benchmarks: cospec_ext.decode beside transformers generate()
and assisted generation, all measured in the same run (`pytest bench`; the figures and
ratios: bench/decode/decode_summary.py).

Models (float32, eval, random init from configs, nothing downloaded):
    target      LlamaForCausalLM, 8 layers, hidden 256, 4 heads / 2 kv heads, intermediate
                512, vocab 512, initializer_range INIT; the residual writes (o_proj,
                down_proj) of layers 2..7 are scaled by LATE_SCALE, so the first two layers
                set most of the prediction and the last six shift it often enough:
                a first-layers draft then agrees with ~60-85% of the target's tokens
                (unscaled, the first 2 of 8 random layers agree on ~5%)
    good draft  the target's own first 2 layers (same embeddings, final norm and lm_head)
    poor draft  an independent random 2-layer model (never agrees)
Prompts: random tokens, P = 32, left-padded ragged rows for B > 1; greedy, no EOS, so every
method emits B * 64 tokens (checked: every decode/generate output equals plain generate's).

Benchmarks (benchmark.pedantic, ROUNDS rounds + 1 warmup, only the decoding call timed;
extra_info["suite"] == "decode", so bench/ops/summary.py skips them):
    test_generate      target.generate(do_sample=False, max_new_tokens=64), B in BATCHES
    test_assisted      target.generate(assistant_model=good draft), B = 1 (transformers'
                       assisted generation takes one row only), its default settings
    test_decode        decode(mode="target"), B in BATCHES;
                       decode(mode="spd", good draft) for each tree in TREES, B in BATCHES;
                       decode(mode="spd", poor draft, tree="chain:4"), B in BATCHES
    test_overhead      the engine outside model forwards: SpecEngine run directly (decode's
                       setup), (wall - target forward s - draft forward s) / rounds, B in
                       {1, 4, 16}, trees chain:1, chain:4, tree:4,3,8 (good draft)

Knobs (environment): COSPEC_BENCH_QUICK=1 (B = 1, chain:4 only, 1 round: a smoke run),
COSPEC_BENCH_THREADS (torch threads, default 2), COSPEC_BENCH_DECODE_ROUNDS (default 9;
the full run is ~26 cases x 10 calls of 0.2-1.5 s each, a few minutes on 2 idle cores).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import torch
import transformers

import cospec_ext
from cospec_ext.engine.adapter import as_adapter
from cospec_ext.engine.loop import SpecEngine
from cospec_ext.engine.tree import parse_tree

QUICK = os.environ.get("COSPEC_BENCH_QUICK", "0") == "1"
THREADS = int(os.environ.get("COSPEC_BENCH_THREADS", "2"))
ROUNDS = 1 if QUICK else int(os.environ.get("COSPEC_BENCH_DECODE_ROUNDS", "9"))

VOCAB, HIDDEN, INTER, HEADS, KV_HEADS = 512, 256, 512, 4, 2
TARGET_LAYERS, DRAFT_LAYERS = 8, 2
INIT = 0.1  # initializer_range: 0.02 makes the greedy output one repeated token
LATE_SCALE = 0.1  # residual writes of layers >= DRAFT_LAYERS (see the module docstring)
PAD, PROMPT_LEN, MAX_NEW = 0, 32, 64
AGREE_RANGE = (0.5, 0.95)  # the good draft's per-token agreement (designed for ~0.6-0.85)

BATCHES = [1] if QUICK else [1, 4]
TREES = ["chain:4"] if QUICK else ["chain:2", "chain:4", "chain:6", "tree:4,2", "tree:4,3,8"]
POOR_TREE = "chain:4"
OVERHEAD_BATCHES = [1] if QUICK else [1, 4, 16]
OVERHEAD_TREES = ["chain:4"] if QUICK else ["chain:1", "chain:4", "tree:4,3,8"]
MODEL_DESC = (f"llama L{TARGET_LAYERS} H{HIDDEN} heads {HEADS}/{KV_HEADS} I{INTER} V{VOCAB} f32; "
              f"drafts L{DRAFT_LAYERS}; P{PROMPT_LEN} +{MAX_NEW}")


# ------------------------------------------------------------------------- models

def _config(layers: int) -> transformers.LlamaConfig:
    return transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTER, num_hidden_layers=layers,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=256,
        initializer_range=INIT, bos_token_id=1, eos_token_id=None, pad_token_id=PAD, attn_implementation="sdpa")


def build_target(seed: int = 0) -> transformers.LlamaForCausalLM:
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(_config(TARGET_LAYERS)).eval()
    with torch.no_grad():
        for layer in model.model.layers[DRAFT_LAYERS:]:
            layer.self_attn.o_proj.weight.mul_(LATE_SCALE)
            layer.mlp.down_proj.weight.mul_(LATE_SCALE)
    return model


def first_layers(model: transformers.LlamaForCausalLM, layers: int) -> transformers.LlamaForCausalLM:
    """A LlamaForCausalLM of `model`'s first `layers` layers (its embeddings, norm and lm_head)."""
    d = {**model.config.to_dict(), "num_hidden_layers": layers}
    if d.get("layer_types"):
        d["layer_types"] = d["layer_types"][:layers]
    draft = model.__class__(model.config.__class__(**d)).eval()
    missing, _ = draft.load_state_dict(model.state_dict(), strict=False)
    assert not missing, missing
    return draft


def build_prompts(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random prompts [B, PROMPT_LEN], left-padded; for B > 1 rows have 20..32 tokens (one full)."""
    g = torch.Generator().manual_seed(1000 + seed)
    lens = torch.randint(20, PROMPT_LEN + 1, (batch,), generator=g)
    lens[0] = PROMPT_LEN
    ids = torch.randint(4, VOCAB, (batch, PROMPT_LEN), generator=g)
    mask = (torch.arange(PROMPT_LEN)[None, :] >= (PROMPT_LEN - lens)[:, None]).long()
    return ids.masked_fill(mask == 0, PAD), mask


def generate(target, ids, mask, **kw) -> torch.Tensor:
    return target.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=MAX_NEW,
                           eos_token_id=None, pad_token_id=PAD, **kw)


def agreement(target, draft, seqs: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of the target's greedy tokens that the draft's argmax matches (teacher-forced)."""
    full = torch.cat([mask, torch.ones(mask.shape[0], seqs.shape[1] - mask.shape[1], dtype=mask.dtype)], 1)
    with torch.no_grad():
        sl = slice(PROMPT_LEN - 1, -1)
        t = target(seqs, attention_mask=full).logits[:, sl].argmax(-1)
        d = draft(seqs, attention_mask=full).logits[:, sl].argmax(-1)
    return float((t == d).float().mean())


class Setup:
    """Module-wide models, prompts and generate() references (built once, untimed)."""

    def __init__(self):
        self.target = build_target(0)
        self.good = first_layers(self.target, DRAFT_LAYERS)
        torch.manual_seed(7)
        self.poor = transformers.LlamaForCausalLM(_config(DRAFT_LAYERS)).eval()
        self._prompts, self._refs = {}, {}
        ids, mask = self.prompts(4)
        ref = self.ref(4)
        distinct = min(len(set(r.tolist())) for r in ref[:, PROMPT_LEN:])
        assert distinct >= MAX_NEW // 2, f"greedy output is repetitive: {distinct} distinct tokens of {MAX_NEW}"
        self.agree = {"good": agreement(self.target, self.good, ref, mask),
                      "poor": agreement(self.target, self.poor, ref, mask)}
        lo, hi = AGREE_RANGE
        assert lo <= self.agree["good"] <= hi, f"good draft agreement {self.agree['good']:.3f} outside {AGREE_RANGE}"
        assert self.agree["poor"] < 0.1, f"poor draft agrees on {self.agree['poor']:.3f} of tokens"

    def draft(self, name):
        return {"good": self.good, "poor": self.poor, None: None}[name]

    def prompts(self, batch):
        if batch not in self._prompts:
            self._prompts[batch] = build_prompts(batch, batch)
        return self._prompts[batch]

    def ref(self, batch):
        if batch not in self._refs:
            ids, mask = self.prompts(batch)
            self._refs[batch] = generate(self.target, ids, mask)
            assert self._refs[batch].shape == (batch, PROMPT_LEN + MAX_NEW)
        return self._refs[batch]


@pytest.fixture(scope="module")
def setup():
    threads = torch.get_num_threads()
    verbosity = transformers.logging.get_verbosity()
    torch.set_num_threads(THREADS)
    transformers.logging.set_verbosity_error()  # generate()'s deprecation notes
    try:
        yield Setup()
    finally:
        torch.set_num_threads(threads)
        transformers.logging.set_verbosity(verbosity)


def _info(benchmark, group: str, **kw):
    benchmark.group = group
    benchmark.extra_info.update(suite="decode", threads=torch.get_num_threads(), model=MODEL_DESC,
                                max_new_tokens=MAX_NEW, prompt_len=PROMPT_LEN, timed_rounds=ROUNDS, **kw)


def _check_same(got: torch.Tensor, ref: torch.Tensor, what: str):
    assert got.shape == ref.shape, f"{what}: shape {list(got.shape)} vs generate {list(ref.shape)}"
    diff = (got != ref).nonzero()
    assert diff.numel() == 0, f"{what}: differs from generate at (row, col) {diff[0].tolist()}"


# --------------------------------------------------------------------- benchmarks

@pytest.mark.parametrize("B", BATCHES, ids=lambda b: f"B{b}")
def test_generate(benchmark, setup, B):
    ids, mask = setup.prompts(B)
    _info(benchmark, f"decode B{B}", bench="generate", B=B, mode="target", draft=None, tree=None,
          tokens=B * MAX_NEW)
    out = benchmark.pedantic(lambda: generate(setup.target, ids, mask), rounds=ROUNDS, warmup_rounds=1)
    _check_same(out, setup.ref(B), "generate")


def test_assisted(benchmark, setup):
    ids, mask = setup.prompts(1)
    _info(benchmark, "decode B1", bench="assisted", B=1, mode="spd", draft="good", tree=None,
          tokens=MAX_NEW, draft_agreement=setup.agree["good"])
    out = benchmark.pedantic(lambda: generate(setup.target, ids, mask, assistant_model=setup.good),
                             rounds=ROUNDS, warmup_rounds=1)
    _check_same(out, setup.ref(1), "assisted generate")
    gc = setup.good.generation_config  # unset fields take transformers' defaults (20, constant, 0.4 in 5.x)
    defaults = getattr(gc, "_get_default_generation_params", dict)()
    for key in ("num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold"):
        val = getattr(gc, key, None)
        benchmark.extra_info[key] = defaults.get(key) if val is None else val


def _decode_cases():
    cases = [pytest.param(B, "target", None, None, id=f"B{B}-target") for B in BATCHES]
    cases += [pytest.param(B, "spd", "good", t, id=f"B{B}-good-{t}") for B in BATCHES for t in TREES]
    cases += [pytest.param(B, "spd", "poor", POOR_TREE, id=f"B{B}-poor-{POOR_TREE}") for B in BATCHES]
    return cases


def _median(xs):
    return statistics.median(xs) if xs else None


@pytest.mark.parametrize("B,mode,draft,tree", _decode_cases())
def test_decode(benchmark, setup, B, mode, draft, tree):
    ids, mask = setup.prompts(B)
    model = setup.draft(draft)
    stats = []

    def run():
        out = cospec_ext.decode(setup.target, model, ids, mask, mode=mode, tree=tree or "chain:4",
                                max_new_tokens=MAX_NEW, eos_token_id=None, pad_token_id=PAD)
        stats.append(out.stats)
        return out

    _info(benchmark, f"decode B{B}", bench="decode", B=B, mode=mode, draft=draft, tree=tree, tokens=B * MAX_NEW,
          draft_agreement=setup.agree.get(draft))
    out = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    _check_same(out.sequences, setup.ref(B), f"decode(mode={mode!r}, draft={draft}, tree={tree})")
    assert out.stats.new_tokens == [MAX_NEW] * B
    timed = stats[1:] or stats  # the warmup call is stats[0]; adaptive depth varies per call
    benchmark.extra_info.update(
        mean_accept_len=_median([s.mean_accept_len for s in timed]),
        verify_rounds=_median([s.rounds for s in timed]),
        target_forwards=_median([s.target_forwards for s in timed]),
        draft_forwards=_median([s.draft_forwards for s in timed]),
        decode_wall_s=_median([s.wall_time_s for s in timed]))
    if draft == "poor":
        assert out.stats.mean_accept_len < 1.2, out.stats.summary()


def run_engine(target, draft, ids, mask, tree):
    """decode(mode="spd", greedy, no EOS) through SpecEngine directly, keeping the engine.
    Returns (sequences [B, P + T], wall seconds, engine)."""
    spec = parse_tree(tree)
    tgt, drf = as_adapter(target), as_adapter(draft)
    pad = (mask == 0).sum(1)
    t0 = time.perf_counter()
    with torch.inference_mode():
        eng = SpecEngine(tgt, drf, ids, pad, spec, MAX_NEW, 0.0, [], PAD)
        eng.run(ids)
        if hasattr(eng, "sequences"):
            seqs = eng.sequences(ids)
        else:  # engines before SpecEngine.sequences
            seqs = torch.cat([ids, eng.out[:, : int(max(eng.out_len))]], dim=1)
    return seqs, time.perf_counter() - t0, eng


@pytest.mark.parametrize("tree", OVERHEAD_TREES)
@pytest.mark.parametrize("B", OVERHEAD_BATCHES, ids=lambda b: f"B{b}")
def test_overhead(benchmark, setup, B, tree):
    ids, mask = setup.prompts(B)
    calls = []

    def run():
        seqs, wall, eng = run_engine(setup.target, setup.good, ids, mask, tree)
        calls.append(dict(wall=wall, target_s=eng.target.seconds, draft_s=eng.draft_runner.seconds,
                          verify_rounds=eng.rounds, target_forwards=eng.target.forwards,
                          draft_forwards=eng.draft_runner.forwards,
                          accept=eng.committed / max(eng.row_rounds, 1)))
        return seqs

    _info(benchmark, f"decode overhead B{B}", bench="overhead", B=B, mode="spd", draft="good", tree=tree,
          tokens=B * MAX_NEW)
    seqs = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    _check_same(seqs, setup.ref(B), f"SpecEngine(B={B}, tree={tree})")
    timed = calls[1:] or calls
    for c in timed:
        c["overhead_per_round"] = (c["wall"] - c["target_s"] - c["draft_s"]) / max(c["verify_rounds"], 1)
        c["overhead_share"] = (c["wall"] - c["target_s"] - c["draft_s"]) / c["wall"]
    benchmark.extra_info.update(
        {k: _median([c[k] for c in timed]) for k in
         ("wall", "target_s", "draft_s", "verify_rounds", "target_forwards", "draft_forwards", "accept",
          "overhead_per_round", "overhead_share")})
