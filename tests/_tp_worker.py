"""Worker of tests/test_tp.py, run under torchrun (gloo, one process per rank): decodes the
same batch with the target loaded tensor-parallel (transformers' tp_plan="auto": each rank
holds half of every layer's heads) and with the whole target, and writes what it got.

    python -m torch.distributed.run --nproc-per-node 2 tests/_tp_worker.py MODELS_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cospec_ext  # noqa: E402
from cospec_ext.engine import LogisticArbiter  # noqa: E402
from _models import EOS, PAD, prompts  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from cospec_train.rl import tp_kwargs  # noqa: E402


def main(models: str, out: str) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    load = lambda d, **kw: AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, **kw).eval()  # noqa: E731
    results = {}
    for arch in sorted(os.listdir(models)):
        d = os.path.join(models, arch)
        target_tp, target, draft = load(d + "/target", **tp_kwargs()), load(d + "/target"), load(d + "/draft")
        ids, mask = prompts(3, seed=7)  # left padding
        arb = LogisticArbiter(["t_logp_cand", "d_logp_cand"], [0.3, 1.0], 3.0)  # accepts at some mismatches
        for mode, kw in (("spd", {}), ("cospec", {"arbiter": arb})):
            # adaptive depth at a given cost (what TP uses, timings never steer it), cheap enough
            # that a random draft keeps drafting and the arbiter is consulted
            common = dict(mode=mode, tree="chain:3;cost=0.1", max_new_tokens=16, eos_token_id=EOS, pad_token_id=PAD,
                          **kw)
            tp = cospec_ext.decode(target_tp, draft, ids, mask, **common)
            one = cospec_ext.decode(target, draft, ids, mask, **common)
            results[f"{arch} {mode}"] = {"tp": tp.sequences.tolist(), "single": one.sequences.tolist(),
                                         "arbiter_accepted": tp.stats.arbiter_accepted,
                                         "consulted": tp.stats.arbiter_consulted}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
