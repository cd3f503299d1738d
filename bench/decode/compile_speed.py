"""Compiled vs eager decoding on the shipped demo pair (or SmolLM2 with --smollm2), beside
transformers' generate(), at batch 1 and 8.

    python bench/decode/compile_speed.py [--n 32] [--repeats 5] [--batches 1,8] [--threads 2]

Held-out arithmetic prompts (validation split, --seed, default 5), greedy, max_new_tokens 64. Every
method first runs once over every batch (compiling its graphs: not timed); then `repeats`
timed passes, each decoding every batch with every method in turn, the order rotating from
batch to batch (a graph first compiled inside a timed pass, when the adaptive depth picks a
depth the warm-up did not, is reported and its compile time, `stats.compile_s`, not timed).
Per method and pass: tokens/s over the whole set; reported: the median over passes, and the
median over passes of the ratio to generate() in the same pass. Every greedy
method's tokens are checked equal to generate()'s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cospec_ext import decode
from cospec_ext.engine.native import unsupported_reason

METHODS = {  # name -> decode kwargs ("draft" overrides the draft; None: generate(); a callable: (ids, mask) -> sequences)
    "generate": None,
    "target": dict(mode="target"),
    "target+compile": dict(mode="target", compile=True),
    "spd": dict(mode="spd"),
    "spd+compile": dict(mode="spd", compile=True),
}


def demo_pair():
    """(target, draft): the shipped demo models, float32, eval mode."""
    from transformers import AutoModelForCausalLM

    from cospec_ext.task.tasks import DEFAULT_DRAFT, DEFAULT_TARGET

    return tuple(AutoModelForCausalLM.from_pretrained(d).eval() for d in (DEFAULT_TARGET, DEFAULT_DRAFT))


def _gen(model, ids, mask, max_new, eos, pad):
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new,
                              eos_token_id=eos, pad_token_id=pad)


def _new_tokens(seq, P, eos, pad) -> int:
    """Generated tokens of generate()-style sequences: up to and including each row's first EOS
    (all of them without EOS)."""
    new = seq[:, P:]
    if eos is None:
        return new.numel()
    eos_ids = torch.tensor([eos] if isinstance(eos, int) else list(eos))
    hit = torch.isin(new, eos_ids)
    first = torch.where(hit.any(1), hit.int().argmax(1) + 1, torch.full((new.shape[0],), new.shape[1]))
    return int(first.sum())


def run(target, draft, batches_of, methods, tree, max_new, eos, pad, repeats, ref_check=True) -> dict:
    """batches_of: list of (ids, mask). Returns {method: {"tps": [per pass], "ratio": [per pass],
    "compile_s": float, "graphs": int}}."""
    def call(name, ids, mask):
        kw = methods[name]
        if kw is None:
            return _gen(target, ids, mask, max_new, eos, pad), None
        if callable(kw):  # another baseline: (ids, mask) -> sequences
            return kw(ids, mask), None
        kw = dict(kw)
        d = kw.pop("draft", draft)
        kw.setdefault("tree", tree)
        out = decode(target, d, ids, mask, max_new_tokens=max_new, eos_token_id=eos, pad_token_id=pad, **kw)
        return out.sequences, out.stats

    res = {m: {"tps": [], "ratio": [], "compile_s": 0.0, "graphs": 0, "accept": [], "late_compile_s": 0.0}
           for m in methods}
    refs = []
    for ids, mask in batches_of:  # warm-up: compiles every graph the timed passes meet
        ref, _ = call("generate", ids, mask)
        refs.append(ref)
        for m in methods:
            seq, st = call(m, ids, mask)
            if st is not None:
                res[m]["compile_s"] += st.compile_s
                res[m]["graphs"] = st.graphs
            if ref_check and not torch.equal(seq, ref):
                bad = (seq != ref).nonzero()[:1].tolist() if seq.shape == ref.shape else "shape"
                raise AssertionError(f"{m}: output differs from generate() at {bad}")
    names = list(methods)
    for r in range(repeats):
        wall, toks = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
        for i, (ids, mask) in enumerate(batches_of):
            k = (r * len(batches_of) + i) % len(names)
            for m in names[k:] + names[:k]:
                t0 = time.perf_counter()
                seq, st = call(m, ids, mask)
                # a graph first met in a timed pass (the adaptive depth chose a depth the warm-up
                # did not): its compile time is reported beside the table, not timed
                wall[m] += time.perf_counter() - t0 - (st.compile_s if st is not None else 0.0)
                toks[m] += _new_tokens(seq, ids.shape[1], eos, pad) if st is None else sum(st.new_tokens)
                if st is not None and st.mean_accept_len:
                    res[m]["accept"].append(st.mean_accept_len)
                if st is not None:
                    res[m]["late_compile_s"] += st.compile_s
        for m in names:
            res[m]["tps"].append(toks[m] / wall[m])
        for m in names:
            res[m]["ratio"].append(res[m]["tps"][-1] / res["generate"]["tps"][-1])
    return res


def table(res: dict, batch: int) -> str:
    lines = [f"batch {batch}:", f"  {'method':<16} {'tok/s (median)':>15} {'x generate (median, range)':>28} "
             f"{'accept len':>10} {'compile s':>9} {'graphs':>6}"]
    for m, r in res.items():
        rr = r["ratio"]
        acc = f"{statistics.median(r['accept']):.2f}" if r["accept"] else "-"
        lines.append(f"  {m:<16} {statistics.median(r['tps']):>15.0f} {statistics.median(rr):>10.2f}x "
                     f"({min(rr):.2f}-{max(rr):.2f}){'':>6} {acc:>10} {r['compile_s']:>9.1f} {r['graphs']:>6}"
                     + (f"  (+{r['late_compile_s']:.1f} s compiling inside timed passes, not timed)" if r["late_compile_s"] > 0.05
                        else ""))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="held-out problems")
    ap.add_argument("--seed", type=int, default=5, help="seed of the held-out problems (validation split)")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes (>= 3)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tree", default="chain:4")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from cospec_ext.task.arith import generate
    from cospec_ext.task.tasks import ArithTask

    target, draft = demo_pair()
    assert unsupported_reason(target) is None and unsupported_reason(draft) is None
    task, probs = ArithTask(), generate(args.n, seed=args.seed, split="validation")
    print(f"demo pair, {args.n} held-out problems (seed {args.seed}), tree {args.tree}, {args.repeats} interleaved passes, "
          f"{args.threads} threads")
    for bs in (int(b) for b in args.batches.split(",")):
        chunks = [task.encode([p["question"] for p in probs[i:i + bs]]) for i in range(0, len(probs), bs)]
        res = run(target, draft, chunks, METHODS, args.tree, args.max_new_tokens, task.eos_id, task.pad_id,
                  args.repeats)
        print(table(res, bs), flush=True)


if __name__ == "__main__":
    main()
