"""`cospec_ext.decode`: target-only, draft-only, speculative (spd) and collaborative
(cospec) decoding over Hugging Face causal LMs or any `ModelAdapter`."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch

from .. import ops
from .adapter import HFAdapter, as_adapter
from .arbiter import Arbiter
from .features import FEATURE_NAMES, check_arbiter, hidden_inputs_of, hidden_widths
from .loop import SpecEngine
from .native import NativeAdapter, unsupported_reason
from .stop import StopStrings
from .stream import Stream
from .tree import TreeSpec, parse_tree
from .warp import check_knobs, resolve

MODES = ("target", "draft", "spd", "cospec")


@dataclass
class DecodeStats:
    """What a decode call did. `mean_accept_len` is tokens committed per verification round
    per row (accepted draft tokens + the target's bonus/correction token)."""

    mode: str
    target_forwards: int
    draft_forwards: int
    new_tokens: list[int]
    rounds: int
    mean_accept_len: float
    arbiter_consulted: int
    arbiter_accepted: int
    wall_time_s: float
    tokens_per_s: float
    draft_accept_rate: float | None = None
    row_rounds: int = 0  # sum over verification rounds of the rows live in them
    compiled: bool = False  # the models ran through the compiled static-shape forward
    compile_s: float = 0.0  # seconds of this call spent compiling graphs (or loading them from the cache)
    graphs: int = 0  # distinct static shapes the compiled forwards have met (all calls so far)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def summary(self) -> str:
        s = (f"mode={self.mode} new_tokens={sum(self.new_tokens)} target_forwards={self.target_forwards} "
             f"draft_forwards={self.draft_forwards} mean_accept_len={self.mean_accept_len:.2f} "
             f"tokens/s={self.tokens_per_s:.1f} wall={self.wall_time_s:.3f}s")
        if self.compiled:
            s += f" compiled (compile {self.compile_s:.1f}s, {self.graphs} graphs)"
        if self.mode == "cospec":
            s += f" arbiter consulted={self.arbiter_consulted} accepted={self.arbiter_accepted}"
        return s


@dataclass
class DecodeTrace:
    """Per verification round (`steps`, dicts of CPU tensors over the rows live in that
    round): rows (original row ids), position (tokens generated before the round, [B]),
    candidates, parents, path [B, N], accept_len [B], consulted, arbiter_accepted [B, N]
    and, in cospec mode, features [B, N, F] (columns FEATURE_NAMES), probs, decisions [B, N]."""

    steps: list = field(default_factory=list)
    feature_names: tuple = FEATURE_NAMES

    def decisions(self, row: int, with_hidden: bool = False):
        """The arbiter's consulted decisions for original row `row`, in order:
        (features float32 [K, F], actions bool [K], probs float32 [K]) and, with_hidden, the
        models' hidden states at the parents, float32 [K, H_t + H_d] (arbiters that read them)."""
        feats, acts, probs, hid = [], [], [], []
        for st in self.steps:
            if st["features"] is None or row not in st["rows"]:
                continue
            b = st["rows"].index(row)
            m = st["consulted"][b]
            feats.append(st["features"][b][m])
            acts.append(st["decisions"][b][m])
            probs.append(st["probs"][b][m])
            if with_hidden:
                hid.append(st["hidden"][b][m])
        F = len(self.feature_names)
        if not feats:
            out = torch.zeros(0, F), torch.zeros(0, dtype=torch.bool), torch.zeros(0)
            return (*out, None) if with_hidden else out
        out = torch.cat(feats), torch.cat(acts), torch.cat(probs)
        return (*out, torch.cat(hid)) if with_hidden else out


@dataclass
class DecodeOutput:
    sequences: torch.Tensor  # int64 [B, P + T], like generate(): prompt, new tokens, pad after EOS
    stats: DecodeStats
    trace: DecodeTrace | None = None


def _gen_attr(model, name):
    for src in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        v = getattr(src, name, None) if src is not None else None
        if v is not None:
            return v
    return None


def _check_prompt(input_ids, attention_mask, device, vocab):
    if not torch.is_tensor(input_ids):
        raise TypeError(f"`input_ids` must be a LongTensor [B, P], got {type(input_ids).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"`input_ids` must be an int64 tensor [B, P], got {input_ids.dtype} {list(input_ids.shape)}")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"`input_ids` is empty ({list(input_ids.shape)}): every row needs at least one token")
    if input_ids.device != device:
        raise ValueError(f"`input_ids` is on {input_ids.device} but the models are on {device}")
    input_ids = input_ids.long()
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    else:
        if attention_mask.dim() == 1:
            attention_mask = attention_mask[None]
        if tuple(attention_mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"`attention_mask` must be [B, P] like input_ids {list(input_ids.shape)}, "
                             f"got {list(attention_mask.shape)}")
        if attention_mask.device != device:
            raise ValueError(f"`attention_mask` is on {attention_mask.device} but the models are on {device}")
        attention_mask = attention_mask.long()
    # every check in one host read (a decode call's fixed cost, paid by batch-1 calls per prompt)
    zero = attention_mask == 0  # [B, P]
    pad = zero.sum(1)  # [B]
    P = input_ids.shape[1]
    m_lo, m_hi = torch.aminmax(attention_mask)
    t_lo, t_hi = torch.aminmax(input_ids.masked_fill(zero, 0))  # over the real tokens
    # left-padded 0/1 rows: the first 1 of each row sits right after its zeros
    shifted = (attention_mask.argmax(1) != pad) & (pad < P)
    lo, hi, bad_order, empty, tlo, thi = torch.stack(
        [m_lo, m_hi, shifted.any(), (pad == P).any(), t_lo, t_hi]).tolist()
    if lo < 0 or hi > 1:
        raise ValueError("`attention_mask` must hold only 0 and 1")
    if bad_order:
        raise ValueError("`attention_mask` must be left-padded (zeros first), like generate() needs for decoder-only models")
    if empty:
        raise ValueError("empty prompt: a row of `attention_mask` has no token")
    if tlo < 0 or thi >= vocab:
        raise ValueError(f"`input_ids` holds token ids outside [0, {vocab})")
    return input_ids, pad


def _native(ad):
    """The compiled static-shape adapter of a transformers model (its graphs persist per model in
    engine/native.py), or `ad` itself with a warning when it cannot run so."""
    if ad is None or not isinstance(ad, HFAdapter):
        if ad is not None:
            warnings.warn(f"compile=True: {type(ad).__name__} is not a transformers model; running it as is")
        return ad
    why = unsupported_reason(ad.model, getattr(ad, "facts", None))
    if why is not None:
        warnings.warn(f"compile=True: {type(ad.model).__name__} runs uncompiled through transformers ({why})")
        return ad
    return NativeAdapter(ad)


def decode(target, draft=None, input_ids=None, attention_mask=None, *, mode: str = "spd", arbiter=None,
           threshold: float | None = None, sample_arbiter: bool = False, tree="chain:4", max_new_tokens: int = 128,
           temperature: float = 0.0, eos_token_id=None, pad_token_id=None, seed: int | None = None,
           return_trace: bool = False, rollout_ids: torch.Tensor | None = None,
           compile: bool = False, top_k: int | None = None, top_p: float | None = None,
           min_p: float | None = None, streamer=None, stop_strings=None, tokenizer=None) -> DecodeOutput:
    """Decodes a batch of left-padded prompts.

    mode: "target" / "draft" plain autoregressive decoding of one model; "spd" speculative
        decoding (lossless: greedy output equals target.generate(do_sample=False), sampled
        output follows the target's distribution); "cospec" spd that consults `arbiter` at
        every draft candidate whose token differs from the target's choice and accepts it
        when the arbiter's probability >= threshold (or a Bernoulli draw, sample_arbiter).
    threshold: None takes the arbiter's own `threshold` attribute (a saved Arbiter's is the one
        chosen on validation data, stored in its validation.json), else 0.5.
    target, draft: transformers causal LMs with a shared vocabulary on one device and
        dtype, or ModelAdapter objects.
    input_ids: int64 [B, P]; attention_mask: [B, P] of 0/1, zeros on the left.
    tree: "chain:K", "tree:D,K[,M]", "static:...", or a TreeSpec (see engine/tree.py).
    temperature: 0 greedy; >= 1e-5 sampling at T; anything in between is greedy too
        (ops.MIN_TEMPERATURE: logits / T would overflow float32). Unlike generate(), never read
        from the model's generation_config: the default 0.0 is greedy.
    top_k, top_p, min_p: sampling filters applied after the temperature in generate()'s order
        (top_k, then top_p, then min_p; engine/warp.py): top_k keeps the logits >= the k-th
        largest; top_p keeps the smallest top set whose probability is >= top_p; min_p drops
        p_i < min_p * max p. Sampled output (every mode; spd/cospec's walk too) follows the
        warped target distribution softmax(w(logits / T)). 0 / 1.0 / 0.0 turn a filter off;
        None takes the (verifying) model's generation_config value, else generate()'s default:
        top_k 50, top_p and min_p off. Greedy ignores them (as generate(do_sample=False)).
    streamer: a transformers streamer (TextStreamer, TextIteratorStreamer: put/end; batch 1;
        put gets the prompt ids [1, P], then each round's committed tokens [1, n]; end() once)
        or a callable fn(row, token_ids: list[int]) called per row per round with the tokens
        it committed (cut after EOS / stop string / max_new_tokens); engine/stream.py.
    stop_strings, tokenizer: str or list of str; a row stops after the token that completes
        one, exactly as generate(stop_strings=..., tokenizer=...) (transformers'
        StopStringCriteria over the prompt and the committed tokens; engine/stop.py).
    eos_token_id: int or list; None takes the model's generation_config, [] disables EOS.
    pad_token_id: fills rows after their EOS; None takes generation_config, then EOS, then 0.
    seed: seeds the sampling and sample_arbiter draws (a torch.Generator on the device).
    rollout_ids: int64 [B], optional ids keying each row's sample_arbiter draws (default the
        row index): with the same seed and id a row draws the same decisions in any batch.
    compile: run Llama/Qwen2/Mistral models through a static-shape forward compiled with
        torch.compile (engine/native.py; CUDA graphs on a GPU). The first call compiles
        (stats.compile_s); later calls with the same models reuse the graphs. Other models,
        tensor-parallel ones and custom adapters run as without it (a warning says so).
    Returns DecodeOutput(sequences int64 [B, P + T] laid out as generate() returns it,
    stats, trace when return_trace).
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be an int >= 1, got {max_new_tokens!r}")
    temperature = float(temperature)
    if not (temperature >= 0.0 and temperature != float("inf")):
        raise ValueError(f"`temperature` must be finite and >= 0, got {temperature}")
    if temperature < ops.MIN_TEMPERATURE:  # greedy, as verify_tree decides too (1/T never overflows)
        temperature = 0.0
    check_knobs(top_k, top_p, min_p)
    spec: TreeSpec = parse_tree(tree)
    arb_cols = None
    if mode == "cospec":
        if arbiter is None:
            raise ValueError('mode="cospec" needs an `arbiter` (an object or the path of a saved one)')
        if isinstance(arbiter, str) or hasattr(arbiter, "__fspath__"):
            arbiter = Arbiter.load(arbiter)
        arb_cols = check_arbiter(arbiter)
        if threshold is None:
            threshold = getattr(arbiter, "threshold", None)
    elif arbiter is not None:
        raise ValueError(f"`arbiter` is only used with mode='cospec', got mode={mode!r}")
    threshold = 0.5 if threshold is None else threshold
    if not (0.0 <= float(threshold) <= 1.0):
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold}")
    if target is None and mode != "draft":
        raise ValueError(f"mode={mode!r} needs a `target` model")
    if draft is None and mode != "target":
        raise ValueError(f"mode={mode!r} needs a `draft` model")
    if not isinstance(compile, bool):
        raise TypeError(f"`compile` must be a bool, got {type(compile).__name__}")
    tgt = as_adapter(target) if target is not None else None
    drf = as_adapter(draft) if draft is not None else None
    if compile:
        tgt = _native(tgt)
        drf = tgt if draft is target else _native(drf)  # a self-draft shares its adapter
    if tgt is not None and drf is not None:
        if tgt.vocab_size != drf.vocab_size:
            raise ValueError(f"draft and target vocabularies differ: target V={tgt.vocab_size}, draft V={drf.vocab_size}")
        if tgt.device != drf.device:
            raise ValueError(f"draft and target are on different devices: {tgt.device} vs {drf.device}")
        if tgt.dtype != drf.dtype:
            raise ValueError(f"draft and target have different dtypes: {tgt.dtype} vs {drf.dtype}")
    hs = getattr(arbiter, "hidden_sizes", None) if mode == "cospec" else None
    if hs is not None:  # check_arbiter has validated the names
        names = hidden_inputs_of(arbiter)
        got = hidden_widths(names, getattr(tgt, "hidden_size", None), getattr(drf, "hidden_size", None))
        if tuple(hs) != got:
            raise ValueError(f"`arbiter` reads hidden states of widths {tuple(hs)} ({', '.join(names)}) but the "
                             f"models have {got}")
    verifier = drf if mode == "draft" else tgt
    drafter = drf if mode in ("spd", "cospec") else None
    if drafter is None:
        spec = TreeSpec(depth=0)
    input_ids, pad = _check_prompt(input_ids, attention_mask, verifier.device, verifier.vocab_size)
    longest = int((input_ids.shape[1] - pad).max())
    for name, ad in (("target", tgt if mode != "draft" else None), ("draft", drafter or (drf if mode == "draft" else None))):
        if ad is not None and ad.max_positions is not None and longest + max_new_tokens + spec.depth > ad.max_positions:
            raise ValueError(f"prompt ({longest} tokens) + max_new_tokens ({max_new_tokens}) + tree depth ({spec.depth}) "
                             f"exceeds the {name} model's {ad.max_positions} positions")
    ref_model = target if mode != "draft" else draft
    if eos_token_id is None:
        eos_token_id = _gen_attr(ref_model, "eos_token_id")
    eos_ids = [] if eos_token_id is None else ([int(eos_token_id)] if isinstance(eos_token_id, int)
                                                else [int(e) for e in eos_token_id])
    if pad_token_id is None:
        pad_token_id = _gen_attr(ref_model, "pad_token_id")
    if pad_token_id is None:
        pad_token_id = eos_ids[0] if eos_ids else 0
    warper = resolve(ref_model, temperature, top_k, top_p, min_p)
    stop = StopStrings(stop_strings, tokenizer) if stop_strings is not None else None
    stream = Stream(streamer, input_ids.shape[0]) if streamer is not None else None
    gen = None
    if seed is not None:
        gen = torch.Generator(device=verifier.device).manual_seed(int(seed))
    trace = [] if return_trace else None
    if rollout_ids is not None and (not torch.is_tensor(rollout_ids) or rollout_ids.shape != (input_ids.shape[0],)):
        raise ValueError(f"`rollout_ids` must be an int64 tensor [B={input_ids.shape[0]}]")
    arbiter_seed = int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, ()))
    native = list({id(a): a for a in (verifier, drafter) if isinstance(a, NativeAdapter)}.values())  # the ones run
    c0 = sum(a.compile_seconds for a in native)
    t0 = time.perf_counter()
    # FSDP2-wrapped layers (transformers' 2-D mesh: data parallel x tensor parallel) keep
    # autograd state in their forward hooks, which inference tensors refuse: no_grad for them
    fsdp = any(getattr(a, "fsdp", False) for a in (verifier, drafter) if a is not None)
    with torch.no_grad() if fsdp else torch.inference_mode():
        eng = SpecEngine(verifier, drafter, input_ids, pad, spec, max_new_tokens, temperature, eos_ids,
                         int(pad_token_id), arbiter, arb_cols, float(threshold), sample_arbiter, gen, trace,
                         rollout_ids, arbiter_seed, warper, stop, stream)
        try:
            eng.run(input_ids)
        finally:  # an iterator streamer's consumer waits for end(), even when decoding fails
            if stream is not None:
                stream.end()
        sequences = eng.sequences(input_ids)
    if verifier.device.type == "cuda":
        torch.cuda.synchronize(verifier.device)
    wall = time.perf_counter() - t0
    n_new = eng.out_len.tolist()
    stats = DecodeStats(
        mode=mode, target_forwards=eng.target.forwards,
        draft_forwards=eng.draft_runner.forwards if eng.draft_runner is not None else 0,
        new_tokens=list(n_new), rounds=eng.rounds,
        mean_accept_len=eng.committed / eng.row_rounds if eng.row_rounds else 1.0,
        arbiter_consulted=eng.consulted, arbiter_accepted=eng.arbiter_accepted, wall_time_s=wall,
        tokens_per_s=sum(n_new) / wall if wall > 0 else float("inf"),
        draft_accept_rate=eng.ctrl.accept_rate if drafter is not None else None, row_rounds=eng.row_rounds,
        compiled=bool(native), compile_s=sum(a.compile_seconds for a in native) - c0,
        graphs=sum(a.graphs for a in native))
    if mode == "draft":
        stats.target_forwards, stats.draft_forwards = 0, eng.target.forwards
    return DecodeOutput(sequences, stats, DecodeTrace(trace) if return_trace else None)
