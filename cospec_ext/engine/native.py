"""A compact, static-shape forward for the Llama family (Llama, Qwen2, Mistral) over the
weights of a transformers model, compiled with `torch.compile` (`decode(compile=True)`).

Why not compile the transformers forward itself: its Cache facade, mask utilities and
kernel-hub hooks change between 5.x releases and retrace on every new sequence length.
This module follows gpt-fast instead: one function per forward, every shape fixed,

    x = embed(tokens)                                     # [Bb, nb, H]
    per layer:  h = rmsnorm(x);  q, k, v = rope(h Wq), rope(h Wk), h Wv
                cache[:, l, rows, :, slots] = k, v         # index writes, no resize
                x += Wo · sdpa(q, cache_k, cache_v, mask)  # over the whole cache, mask [Bb, 1, nb, S]
                x += Wdown (act(x' Wgate) * x' Wup),  x' = rmsnorm(x)
    logits = lm_head(rmsnorm(x))                         # [Bb, nb, V]

so `torch.compile(dynamic=False)` makes one graph per (batch bucket Bb, query bucket nb,
cache shape): the batch is padded to a power of two (at most the cache's rows), the query
count to `query_bucket(n)`, the cache's length S to `cache_length` (a ladder that does not
move with the prompt's length), and attention always covers all S slots of the cache, the
engine's boolean mask hiding what a row may not see. Padding queries and rows attend every
slot (finite values: the cache starts zeroed) and write slot S - 1, which no real query's
mask ever opens (the engine sizes S with two spare slots).
The weights are the model's own tensors (nothing is copied). On a GPU the graphs run as
CUDA graphs (`mode="reduce-overhead"`); on the CPU inductor emits C++. The forward itself,
`_Core`, is engine/core.py; this module buckets the shapes and compiles and calls the graphs.

A prefill over few rows (batch bucket x prompt length <= PREFILL_ROWS_MAX, CPU) runs one graph
per (batch bucket, cache shape) that is dynamic in the prompt length (the head over the last
position only; after its first call it is called directly, the length passed as its size
symbol, not through dynamo's guards, which cost ~0.6 ms a call): at batch 1 its eager run paid
more for launching ~50 small ops per layer than for the projections (the demo target's 11-token
prefill: 5.9 ms eager, 2.6-2.8 ms compiled; its draft's 0.8 vs 0.28 ms); a one-token prompt runs
the rounds' one-token graph. A longer prefill and a forward over more than
COMPILED_QUERY_MAX tokens (a draft's catch-up after many idle rounds) run the same code
eagerly; their matrix products over many rows are compute-bound, where a graph saves little,
and compiling one per prompt length once cost a 538 MB model 90 s for one new prompt. So a
model compiles at most (query buckets <= COMPILED_QUERY_MAX: 10) x (batch buckets: powers of
two up to the cache's rows) x (cache lengths met) graphs, plus one draft chain graph
(`_Core.chain`) and one prefill graph per batch bucket and cache shape, and after one call
every later call whose prompt + new tokens fit the same cache length meets no new graph.
"""

from __future__ import annotations

import contextlib
import time
import types
import weakref

import torch
import torch.nn.functional as F
from torch._dynamo.utils import counters as _counters

from .core import _ACTS, LINEAR_ROWS_MAX, PACKED_ROWS_MIN, _Core, _linear  # noqa: F401 (_linear re-exported)

SUPPORTED = ("llama", "qwen2", "mistral")


COMPILED_QUERY_MAX = 32  # forwards over more tokens (prefills aside: always eager) run eagerly
# Steps of a batched draft's greedy chain per compiled graph (NativeAdapter.forward_chain): a
# longer chain calls the graph again from where it stopped. Each step is its own code in the
# graph: the demo draft's 8-step chain at batch 8 took 41 s to build, a 4-step one 14 s (31 s and
# 12 s at batch 1; `make demo` builds both), and two calls of 4 steps cost ~0.07 ms more per round
# than one of 8 (1.0 vs 0.93 ms; spd / target-only 1.51x vs 1.52x, noise). A batch-1 chain stays
# one graph: there the extra call would be ~2% of a round, and batch 1 is the latency case.
CHAIN_GRAPH_STEPS = 4
KV_SHARE = 0.05  # a static cache's length is at least what reading it costs 5% of the weights' bytes


def query_bucket(n: int) -> int:
    """The padded query count of a forward over n tokens: n itself up to 6, then 8, then
    multiples of 8. On the CPU a projection over M rows streams W once but costs M FMAs per
    weight, which two cores do not fully hide behind the memory stream: a forward over 8
    tokens costs 1.1-1.2x one over 5 (bench/ops/forward_buckets.py), so a 5-node tree is not
    padded to 8."""
    if n <= 6:
        return n
    return -(-n // 8) * 8


def cache_length(needed: int, rows: int, slot_bytes: int, weight_bytes: int) -> int:
    """The slots S of a static cache for `needed` positions: the smallest value of the ladder
    128, 192, 256, 384, 512, 768, ... (128 * 2^k and 192 * 2^k) that is >= needed and >= the
    model's floor, the largest ladder value whose cache (rows x S x slot_bytes: K and V of every
    layer) is at most KV_SHARE of the weights' bytes. Attention reads every slot, so the floor
    costs a step at most ~5% more than an exact cache, and calls with any prompt below it share
    one cache shape, hence one set of graphs (SmolLM2-135M at batch 1: 512 slots; the demo
    target: 128). At most 2 log2(max_len / 128) + 1 lengths exist."""
    def ladder():
        v = 128
        while True:
            yield v
            yield v * 3 // 2
            v *= 2

    floor = 128
    for v in ladder():
        if rows * v * slot_bytes > KV_SHARE * weight_bytes:
            break
        floor = v
    return next(v for v in ladder() if v >= max(needed, floor))


def batch_bucket(b: int, rows: int) -> int:
    """The padded batch of a forward over b live rows of a cache with `rows` rows: the next
    power of two, at most `rows`."""
    return min(1 << (b - 1).bit_length(), rows)


def unsupported_reason(model, facts: dict | None = None) -> str | None:
    """None when `model` can run natively, else why not (the caller falls back to transformers).
    facts: its adapter's `model_facts` (engine/adapter.py), which spare two walks over the
    parameters per decode call."""
    cfg = getattr(model, "config", None)
    mt = getattr(cfg, "model_type", None)
    if mt not in SUPPORTED:
        return f"model_type {mt!r} is not one of {SUPPORTED}"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        return f"{type(model).__name__} does not have the usual .model.layers / .lm_head layout"
    if facts["tensor_parallel"] if facts else any(hasattr(p, "to_local") for p in model.parameters()):
        return "its weights are tensor-parallel shards (DTensor)"
    if (facts["devices"] if facts else len({p.device for p in model.parameters()})) > 1:
        return "it is spread over several devices (device_map)"
    if getattr(cfg, "hidden_act", "silu") not in _ACTS:
        return f"activation {cfg.hidden_act!r}"
    if getattr(cfg, "use_sliding_window", False) or (mt == "mistral" and getattr(cfg, "sliding_window", None)):
        return "sliding-window attention"
    rope = getattr(inner, "rotary_emb", None)
    if rope is None or not hasattr(rope, "inv_freq"):
        return "no rotary_emb.inv_freq"
    if getattr(rope, "rope_type", "default") == "dynamic":
        return "dynamic RoPE scaling changes with the sequence length"
    return None


# Rows (batch bucket x prompt tokens) up to which a CPU prefill runs as a compiled graph dynamic in
# the prompt length (module docstring). Its projections all run as cospec::linear_rows (below
# PACKED_ROWS_MIN rows: the graph does not take the packed copies).
PREFILL_ROWS_MAX = PACKED_ROWS_MIN - 1
# The same for a prefill that a round's tree rides on (logits of its last keep > 1 positions:
# engine/loop.py, a batch-1 spd call's first round; a prompt of P tokens and a chain:7 tree make
# P - 1 + 8 rows): up to LINEAR_ROWS_MAX rows. Its rows cross PACKED_ROWS_MIN, so its projections
# run as cospec::linear_auto, which takes linear_packed from PACKED_ROWS_MIN rows on when it runs
# (a choice while tracing would guard on the rows and split the graph): on EPYC-32 the demo
# pair's carried prefill costs 1.35-1.47x a verification forward instead of 1.60-1.71x
# (bench/RESULTS.md). The plain prefill keeps 16, so that a warm-up call on a short prompt
# leaves longer prompts no graph to build (they run eagerly).
CARRIED_ROWS_MAX = LINEAR_ROWS_MAX


def prefill_rows_max(keep: int) -> int:
    """Rows up to which a prefill keeping the logits of its last `keep` positions is compiled."""
    return CARRIED_ROWS_MAX if keep > 1 else PREFILL_ROWS_MAX
# Weight bytes from which a model's compiled CPU kernels use torch's thread count (CompiledCore).
PARALLEL_BYTES = 64 << 20

_CORES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> CompiledCore


def _own_code(fn, tag: str, defaults: tuple | None = None):
    """`fn` (a bound method) with a code object of its own: dynamo keeps one cache of graphs
    per code object and checks a call's guards against each entry in turn, so one code
    object per graph keeps that check O(1) however many graphs the models meet. defaults:
    other values for its trailing keyword defaults (constants of the graph)."""
    f = fn.__func__
    code = f.__code__.replace(co_name=f"{f.__name__}_{tag}")
    g = types.FunctionType(code, f.__globals__, code.co_name, defaults if defaults is not None else f.__defaults__,
                           f.__closure__)
    return types.MethodType(g, fn.__self__)


def _std(x: torch.Tensor) -> torch.Tensor:
    """x with the standard contiguous strides, size-1 dimensions included (a graph compiled
    with dynamic=False is specialised on every stride)."""
    want, acc = [], 1
    for d in reversed(x.shape):
        want.append(acc)
        acc *= d
    if list(x.stride()) == want[::-1]:
        return x
    return x.clone(memory_format=torch.contiguous_format)


def _skip_guards():
    """torch.compiler.set_stance(skip_guard_eval_unsafe=True) where torch has it: a code object
    with one cache entry then calls its graph without checking guards (the inductor wrapper
    still asserts every input's size and stride)."""
    try:
        return torch.compiler.set_stance("default", skip_guard_eval_unsafe=True)
    except (TypeError, AttributeError):
        return contextlib.nullcontext()


class CompiledCore:
    """A model's `_Core` and one `torch.compile`d forward per static shape, built once per model
    and kept across decode calls: `fns` maps a shape key (Bb, nb, cache shape, dtype, device)
    to (compiled forward, _Capture or None); `guarded` holds the keys whose calls check dynamo's
    guards when they are not called directly (the dynamic prefill's, or a graph whose guards
    proved needed)."""

    def __init__(self, model):
        self.core = _Core(model)  # holds the model's modules: never .to() it
        self.fns: dict = {}
        self.guarded: set = set()
        # CPU kernels' threads: one for small models, whose forwards are many tiny kernels
        # (a parallel region's fork/join, several us, would cost more than it saves); torch's
        # thread count from PARALLEL_BYTES of weights on, where reading the weights dominates
        # and one core does not reach the memory bandwidth on every machine (bench/RESULTS.md)
        self.nbytes = nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self.cpu_threads = torch.get_num_threads() if nbytes >= PARALLEL_BYTES else 1

    def get(self, key: tuple):
        """(the compiled forward of this shape, its _Capture or None). GPU: CUDA graphs; CPU:
        inductor's C++ wrapper (its Python wrapper costs more than the kernels of a small model:
        0.41 vs 0.28 ms per forward of the demo target, measured) with `cpu_threads` threads,
        through a backend that keeps what it compiled."""
        hit = self.fns.get(key)
        if hit is None:
            tag = "_".join(str(k) for k in key[:2]) + f"_{len(self.fns)}"
            if key[0] == "chain":  # ("chain", Bb, steps, ...): the draft's chain, `steps` baked in
                f = _own_code(self.core.chain, tag, defaults=(key[2],))
            elif key[0] == "prefill":  # ("prefill", Bb, keep, ...): `keep` baked in; the packed copies
                # where its rows reach PACKED_ROWS_MIN (cospec::linear_auto then picks per call)
                packed = "auto" if prefill_rows_max(key[2]) >= PACKED_ROWS_MIN else False
                f = _own_code(self.core.forward, tag, defaults=(key[2], packed))
            else:
                f = _own_code(self.core.forward, tag)
            if key[-1].type == "cuda":
                hit = (torch.compile(f, dynamic=False, fullgraph=True, mode="reduce-overhead"), None)
            elif key[0] == "prefill":  # dynamic in the prompt length (mark_dynamic on its first call):
                cap = _Capture(_cpu_options(self.cpu_threads))  # called directly once bound, else
                hit = (torch.compile(f, fullgraph=True, backend=cap), cap)  # through dynamo's guards
                self.guarded.add(key)
            else:
                cap = _Capture(_cpu_options(self.cpu_threads))
                hit = (torch.compile(f, dynamic=False, fullgraph=True, backend=cap), cap)
            self.fns[key] = hit
        return hit

    def run(self, key: tuple, inputs: tuple, dynamic: bool = False):
        """Calls the graph of `key` (compiling it on first use) -> (logits, hidden). dynamic: its
        first call's inputs were marked dynamic (mark_dynamic)."""
        new = key not in self.fns
        fn, cap = self.get(key)
        if new:
            try:
                # dynamic only where marked: dynamo's automatic dynamic shapes would also make sizes
                # symbolic that differed in an earlier frame of the same name (another model's
                # weights, in a process that decoded with several models)
                with _quiet("torch._guards"), torch._dynamo.config.patch(automatic_dynamic_shapes=False):
                    out = fn(*inputs)
            except Exception as e:  # noqa: BLE001 - only the one case below is handled
                if "Constraints violated" not in str(e):
                    raise
                # a dynamic graph found in inductor's on-disk cache as an older build compiled it,
                # for a narrower range of the prompt length, brings that range's guards: build it
                # afresh (once per process and shape)
                with _no_disk_cache(), torch._dynamo.config.patch(automatic_dynamic_shapes=False):
                    out = fn(*inputs)
            if cap is not None:
                cap.bind(inputs, dynamic)
            return out
        if cap is not None and cap.user_idx is not None:
            return cap.call(inputs)
        if key in self.guarded:
            return fn(*inputs)
        try:  # this code object holds this one graph, chosen by key: its guards need not run
            with _skip_guards():
                return fn(*inputs)
        except RuntimeError as e:  # a guard would have failed after all: check them from now on
            if "skip_guard_eval_unsafe" not in str(e):
                raise
            self.guarded.add(key)
            return fn(*inputs)


@contextlib.contextmanager
def _quiet(name: str):
    """Logger `name` silent inside the block."""
    import logging

    log = logging.getLogger(name)
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


@contextlib.contextmanager
def _no_disk_cache():
    """Compiles without inductor's FX graph cache and AOTAutograd's cache (neither read nor written)."""
    from torch._functorch import config as functorch_config
    from torch._inductor import config as inductor_config

    with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False):
        yield


def _cpu_options(threads: int) -> dict:
    """Inductor's options for a CPU graph: the C++ wrapper, `threads` threads, and (where torch
    has the option) the wrapper built apart from the kernels at a lower optimisation level:
    a demo-target graph then compiles in 12.6-13.3 s instead of 17.9-18.2 s (an empty inductor
    cache; `make demo` builds ~20 graphs) and runs as fast (2.25 vs 2.30 ms at one token, 2.54
    vs 2.49 ms at six; medians of 40 interleaved calls, bench/RESULTS.md)."""
    from torch._inductor import config as inductor_config

    opts = {"cpp_wrapper": True, "cpp.threads": threads}
    if hasattr(inductor_config, "cpp_wrapper_build_separate"):
        opts["cpp_wrapper_build_separate"] = True
    return opts


class _Capture:
    """A torch.compile backend that compiles with inductor and keeps the compiled function and
    the graph's example inputs (the model's parameters and the first call's tensors), so later
    calls of the same shape can call it directly with their own tensors in the user inputs'
    places, without dynamo's per-call frame handling (~0.1-0.2 ms per call measured; a graph
    dynamic in the prompt length ~0.6 ms through its guards). A dynamic graph also takes each
    size symbol as an input: `syms` says where each is read, (its input, tensor input, dim)."""

    def __init__(self, options):
        self.options = options
        self.fn = self.examples = self.user_idx = None
        self.syms: list | None = []

    def __call__(self, gm, example_inputs):
        from torch._inductor.compile_fx import compile_fx

        self.fn = compile_fx(gm, example_inputs, config_patches=self.options)
        self.examples = list(example_inputs)
        self.syms = _sym_sources(gm, self.examples)
        return self.fn

    def bind(self, inputs: tuple, dynamic: bool = False) -> None:
        """After the first call: where each of `inputs` sits among the example inputs (by identity);
        None (never called directly) unless every one is found exactly once and, for a graph meant
        to be dynamic, its size symbols were all located (a graph that dynamo specialised keeps
        its guards)."""
        idx = []
        for t in inputs:
            at = [i for i, e in enumerate(self.examples or []) if e is t]
            if len(at) != 1:
                self.user_idx = None
                return
            idx.append(at[0])
        self.user_idx = idx if self.syms is not None and (self.syms or not dynamic) else None

    def call(self, inputs: tuple):
        args = list(self.examples)
        for i, t in zip(self.user_idx, inputs):
            args[i] = t
        for i, j, d in self.syms:  # a size symbol: its value in this call's tensors
            args[i] = args[j].shape[d]
        return self.fn(*args)


def _sym_sources(gm, examples: list) -> list | None:
    """For each size-symbol input of a dynamic graph (a SymInt among its example inputs), where
    its value is read: (its input, a tensor input, the dim of that tensor's size that is the
    symbol, compared after the shape environment's replacements: a placeholder's symbol may have
    been unified with another) -> list of triples; None when one cannot be found."""
    phs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(phs) != len(examples):
        return None if any(isinstance(e, torch.SymInt) for e in examples) else []

    def expr(v):
        env = v.node.shape_env
        return env.simplify(v.node.expr) if env is not None else v.node.expr

    # (input, dim, symbol) of every symbolic size of the tensor inputs
    dims = [(j, d, expr(size)) for j, ph in enumerate(phs) if isinstance(ph.meta.get("example_value"), torch.Tensor)
            for d, size in enumerate(ph.meta["example_value"].shape) if isinstance(size, torch.SymInt)]
    out = []
    for i, e in enumerate(examples):
        if isinstance(e, torch.SymInt):
            v = phs[i].meta.get("example_value")
            want = expr(v if isinstance(v, torch.SymInt) else e)
            at = next(((j, d) for j, d, x in dims if x == want), None)
            if at is None:
                return None
            out.append((i, *at))
    return out


def compiled_core(model) -> CompiledCore:
    """The model's CompiledCore, created on first use."""
    hit = _CORES.get(model)
    if hit is None:
        hit = _CORES[model] = CompiledCore(model)
    return hit


class NativeAdapter:
    """`ModelAdapter` running a Llama-family transformers model through `_Core`.

    compile: run the compiled core (else the same code eagerly, for tests). The graphs live in
    the model's CompiledCore, so an adapter is cheap to create per call; `compile_seconds` is
    the time of this adapter's forwards that met a new shape (dynamo tracing + inductor, or a
    cache load), `graphs` the number of shapes the model's core has compiled.
    """

    static_shapes = True

    def __init__(self, hf_adapter, compile: bool = True):
        for a in ("model", "config", "num_layers", "head_dim", "num_kv_heads", "vocab_size", "dtype", "device",
                  "max_positions", "hidden_size", "num_params"):
            setattr(self, a, getattr(hf_adapter, a))
        self.tensor_parallel = False
        self.compiled = compiled_core(self.model)
        self.core = self.compiled.core
        self.core.refresh_packed()
        self.compile = compile
        self.compile_seconds = 0.0

    @property
    def graphs(self) -> int:
        return len(self.compiled.fns)

    def cache_length(self, needed: int, rows: int) -> int:
        """The slots of a static cache of `rows` rows that holds `needed` positions (module
        `cache_length`)."""
        slot = 2 * self.num_layers * self.num_kv_heads * self.head_dim * torch.empty((), dtype=self.dtype).element_size()
        return cache_length(needed, rows, slot, self.compiled.nbytes)

    def forward(self, input_ids, position_ids, attention_mask, kv, logits_to_keep: int = 0,
                return_hidden: bool = False):
        """As `ModelAdapter.forward`; a prefill (logits_to_keep > 0) runs eagerly unless it is
        short (module docstring)."""
        B, n = input_ids.shape
        cache = kv.cache.data  # [2, L, B0, H, S, D]
        B0, S = cache.shape[2], cache.shape[4]
        dev = input_ids.device
        # a short CPU prefill is compiled: one graph dynamic in n, or the rounds' one-token graph
        short = self.compile and dev.type == "cpu" and batch_bucket(B, B0) * n <= prefill_rows_max(logits_to_keep)
        if logits_to_keep and short and n > logits_to_keep:
            return self._prefill_graph(input_ids, position_ids, attention_mask, kv, logits_to_keep, return_hidden)
        # a longer prefill, or more tokens than a round's tree: eager, unpadded (module docstring)
        eager = (logits_to_keep > 0 and not short) or query_bucket(n) > COMPILED_QUERY_MAX
        Bb, nb = (B, n) if eager else (batch_bucket(B, B0), query_bucket(n))
        s_used = attention_mask.shape[-1]
        slots = kv.slot_tensor(n)  # [B, n]
        if eager and self.compile:  # no static shape: attend over the slots in use only
            view = cache.narrow(4, 0, s_used)  # [2, L, B0, H, s_used, D], written in place
            logits, hid = self.core(_std(input_ids), _std(position_ids), _std(attention_mask), _std(slots), view,
                                    keep=logits_to_keep)  # [B, logits_to_keep or n, V]
            return (logits, hid) if return_hidden else logits
        inputs = _padded(input_ids, position_ids, attention_mask, slots, Bb, nb, S) + (cache,)
        if not self.compile:
            logits, hid = self.core(*inputs)
        else:
            logits, hid = self._graph((Bb, nb, tuple(cache.shape), cache.dtype, dev), inputs)
        return _keep(logits, hid, B, n, Bb, nb, logits_to_keep, return_hidden)

    def _prefill_graph(self, input_ids, position_ids, attention_mask, kv, keep: int, return_hidden: bool):
        """A short CPU prefill through the graph of (batch bucket, keep, cache shape), dynamic in
        the prompt length n (keep < n, batch bucket x n <= prefill_rows_max(keep)): input_ids,
        position_ids int64 [B, n], attention_mask bool [B, 1, n, n] -> logits [B, keep, V] (and
        the last hidden states [B, keep, hidden])."""
        B, n = input_ids.shape
        cache = kv.cache.data  # [2, L, B0, H, S, D]
        Bb = batch_bucket(B, cache.shape[2])
        inputs = _padded(input_ids, position_ids, attention_mask, kv.slot_tensor(n), Bb, n, cache.shape[4]) + (cache,)
        key = ("prefill", Bb, keep, tuple(cache.shape), cache.dtype, input_ids.device)
        hi = prefill_rows_max(keep) // Bb  # the longest prompt this graph meets
        dynamic = key not in self.compiled.fns and hi > keep + 1
        if dynamic:  # the first call traces n as a symbol (not one graph per n)
            for t, dim in zip(inputs[:4], (1, 1, 2, 1)):  # tokens, positions, mask [Bb, 1, n, S], slots
                torch._dynamo.mark_dynamic(t, dim, min=keep + 1, max=hi)
        logits, hid = self._graph(key, inputs, dynamic)  # [Bb, keep, V], [Bb, keep, hidden]
        return (logits[:B], hid[:B]) if return_hidden else logits[:B]

    def chains(self, live: int, rows: int) -> bool:
        """Whether a draft's greedy chain runs as one call (forward_chain) for `live` rows of a
        cache of `rows` rows. Compiled on the CPU only while the live rows fill the cache's
        batch bucket (a batch-1 call always; a batch-8 call until its first rows finish): one
        chain graph per cache, not one per batch bucket the rows shrink through. At batch 1 the
        graph makes the demo pair's SPD 1.08-1.13x faster than the per-level forwards (a round
        drafts in 0.88 ms instead of 1.17) for ~15 s more compile; built at every bucket it took
        make demo's cold graph building from 164 s to 430 s (bench/RESULTS.md). Calling the
        one-token graph once per step instead (no new graph) was 0.89x the fused chain's speed."""
        return not self.compile or self.device.type == "cuda" or batch_bucket(live, rows) == rows

    def forward_chain(self, input_ids, position_ids, attention_mask, kv, steps: int):
        """A greedy chain of `steps` one-token forwards in one graph (`_Core.chain`; batched: in
        graphs of CHAIN_GRAPH_STEPS, each from where the last stopped): input_ids,
        position_ids int64 [B, 1] (the first token and its position), attention_mask bool
        [B, 1, 1, s_used] (its row; slot kv's + i is opened for step i), kv: the first token's
        slots. Writes slots + [0, steps) of the cache. Returns (argmaxes int64 [B, steps],
        logits [B, steps, V], last hidden states [B, steps, hidden])."""
        B = input_ids.shape[0]
        cache = kv.cache.data  # [2, L, B0, H, S, D]
        Bb = batch_bucket(B, cache.shape[2])
        inputs = _padded(input_ids, position_ids, attention_mask, kv.slot_tensor(1), Bb, 1, cache.shape[4]) + (cache,)
        if not self.compile:
            toks, logits, hid = self.core.chain(*inputs, steps)[:3]
            return toks[:B], logits[:B], hid[:B]
        per_graph = CHAIN_GRAPH_STEPS if Bb > 1 else steps
        outs, done = [], 0
        while done < steps:  # graphs of at most per_graph steps, each going on from the last one's state
            n = min(per_graph, steps - done)
            out = self._graph(("chain", Bb, n, tuple(cache.shape), cache.dtype, input_ids.device), inputs)
            outs.append(out[:3])  # argmaxes, logits, hidden states
            done += n
            if done < steps:  # the next step's token, position, mask and slot
                inputs = tuple(_std(t) for t in out[3:]) + (cache,)
        if len(outs) == 1:
            toks, logits, hid = outs[0]
        else:
            toks, logits, hid = (torch.cat(parts, 1) for parts in zip(*outs))
        return toks[:B], logits[:B], hid[:B]

    def _graph(self, key: tuple, inputs: tuple, dynamic: bool = False) -> tuple:
        """The compiled graph of `key` run on inputs (tokens, positions, mask, slots, cache), the
        seconds of a call that compiled (its first, or dynamo's recompile of a guarded one) added
        to compile_seconds (dynamic: its first call's inputs are marked dynamic, CompiledCore.run).
        On a GPU it is a CUDA graph:
        the cache is marked static (written in place) and the outputs are cloned, since the
        next replay overwrites them."""
        cache, dev = inputs[-1], inputs[0].device
        new = key not in self.compiled.fns
        # a graph called through dynamo's guards (a dynamic one) may recompile: that counts too
        captured = _counters["stats"]["unique_graphs"] if key in self.compiled.guarded else None
        t0 = time.perf_counter()
        cuda = dev.type == "cuda"
        if cuda:
            if getattr(cache, "_dynamo_static_input_type", None) is None:
                torch._dynamo.mark_static_address(cache)
            torch.compiler.cudagraph_mark_step_begin()
        out = self.compiled.run(key, inputs, dynamic)
        if cuda:
            out = tuple(t.clone() for t in out)
        if new or (captured is not None and _counters["stats"]["unique_graphs"] != captured):
            if cuda:
                torch.cuda.synchronize(dev)
            self.compile_seconds += time.perf_counter() - t0
        return out


def _padded(input_ids, position_ids, attention_mask, slots, Bb: int, nb: int, S: int) -> tuple:
    """(tokens, positions, mask, slots) of B rows x n tokens padded to a graph's [Bb, nb]:
    the mask widened to all S slots (slots past its width are never attended), padding tokens
    at position 0 writing the spare slot S - 1 and attending every slot (all finite); every
    tensor with standard strides. Shapes: int64 [Bb, nb] x 3 and bool mask [Bb, 1, nb, S]."""
    B, n = input_ids.shape
    if attention_mask.shape[-1] < S:
        attention_mask = F.pad(attention_mask, (0, S - attention_mask.shape[-1]), value=False)
    if (Bb, nb) == (B, n):
        return _std(input_ids), _std(position_ids), _std(attention_mask), _std(slots)
    grow = (0, nb - n, 0, Bb - B)
    return (F.pad(input_ids, grow), F.pad(position_ids, grow),
            F.pad(attention_mask, (0, 0) + grow[:2] + (0, 0) + grow[2:], value=True),  # [Bb, 1, nb, S]
            F.pad(slots, grow, value=S - 1))


def _keep(logits, hid, B, n, Bb, nb, logits_to_keep, return_hidden):
    """The real rows and kept positions of a forward's outputs over [Bb, nb] (padded) tokens:
    logits [B, n or logits_to_keep, V] (and hidden states alike)."""
    lo = n - logits_to_keep if logits_to_keep else 0
    if lo or (Bb, nb) != (B, n):  # else the graph's output is the answer as it is
        logits = logits[:B, lo:n]
        if (Bb, nb) != (B, n - lo):
            logits = logits.contiguous()
    if return_hidden:
        return logits, hid[:B, lo:n].contiguous()
    return logits
