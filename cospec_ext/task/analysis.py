"""Replaying both branches at draft/target mismatches: how much CoSpec could gain.

Along the target's greedy answer to each problem, a mismatch is a position where the
draft's greedy token (teacher-forced on the same prefix) differs from the target's. At
each mismatch we replay the draft's branch: the prefix, the draft's token, then the
target's greedy continuation, and check its final answer. From that:
    disagreement rate   mismatches / target tokens
    draft_better        mismatches whose draft branch is correct while the target's answer is wrong
    target_better       mismatches whose draft branch is wrong while the target's answer is right
    oracle              a problem is solved if the target's answer or any single-mismatch
                        draft branch is correct (the best branch at a mismatch, one deviation)
`decision_agreement` replays both branches at the mismatches a CoSpec run consulted and
compares the arbiter's decisions with the oracle's (accept iff only the draft branch is
correct; reject iff only the target branch is; indifferent when both agree).
"""

from __future__ import annotations

import torch

from ..engine import decode
from .tasks import left_pad as _left_pad


def greedy_continue(target, task, prefixes: list[list[int]], budgets: list[int], batch: int = 256) -> list[list[int]]:
    """Target-greedy continuation of each token prefix, at most budgets[i] tokens, cut after EOS."""
    outs: list[list[int]] = [[] for _ in prefixes]
    limit = getattr(target.config, "max_position_embeddings", None) or 1 << 30
    order = sorted((i for i in range(len(prefixes)) if budgets[i] > 0), key=lambda i: len(prefixes[i]))
    groups, cur = [], []
    for i in order:  # batches of similar length whose longest prefix + largest budget fit the positions
        grown = cur + [i]
        if cur and (len(grown) > batch or max(len(prefixes[j]) for j in grown) + max(budgets[j] for j in grown) > limit):
            groups.append(cur)
            grown = [i]
        cur = grown
    if cur:
        groups.append(cur)
    for idx in groups:
        ids, mask = _left_pad([prefixes[i] for i in idx], task.pad_id)
        out = decode(target, None, ids, mask, mode="target", max_new_tokens=max(budgets[i] for i in idx),
                     eos_token_id=task.eos_id, pad_token_id=task.pad_id)
        P = ids.shape[1]
        for b, i in enumerate(idx):
            outs[i] = out.sequences[b, P:P + min(out.stats.new_tokens[b], budgets[i])].tolist()
    return outs


@torch.no_grad()
def _draft_argmax(draft, task, prompts: list[list[int]], gens: list[list[int]]) -> list[list[int]]:
    """The draft's greedy token at every generated position, teacher-forced on prompt + gen."""
    ids, mask = _left_pad([p + g for p, g in zip(prompts, gens)], task.pad_id)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    pred = draft(input_ids=ids, attention_mask=mask, position_ids=pos).logits.argmax(-1)  # [B, L]
    L = ids.shape[1]
    return [pred[b, L - len(g) - 1: L - 1].tolist() for b, g in enumerate(gens)]


def target_path_analysis(target, draft, task, problems, max_new_tokens=64, batch=128) -> dict:
    """Disagreement, draft-better / target-better mismatches and the oracle (module docstring)."""
    prompts = [task.encode([p["question"]])[0][0].tolist() for p in problems]
    gens = greedy_continue(target, task, prompts, [max_new_tokens] * len(problems), batch)
    t_ok = [task.is_correct(g, p["final"]) for g, p in zip(gens, problems)]
    d_pred = []
    for s in range(0, len(problems), batch):
        d_pred += _draft_argmax(draft, task, prompts[s:s + batch], gens[s:s + batch])
    branches = []  # (problem, j, prefix tokens of the answer, budget)
    for i, (g, d) in enumerate(zip(gens, d_pred)):
        for j, (tt, dt) in enumerate(zip(g, d)):
            if tt != dt:
                branches.append((i, j, g[:j] + [dt], 0 if dt == task.eos_id else max_new_tokens - j - 1))
    conts = greedy_continue(target, task, [prompts[i] + a for i, _, a, _ in branches], [b for *_, b in branches],
                            batch=256)
    b_ok = [task.is_correct(a + c, problems[i]["final"]) for (i, _, a, _), c in zip(branches, conts)]
    oracle = list(t_ok)
    draft_better = target_better = 0
    for (i, *_), ok in zip(branches, b_ok):
        draft_better += ok and not t_ok[i]
        target_better += t_ok[i] and not ok
        oracle[i] = oracle[i] or ok
    n_tok = sum(len(g) for g in gens)
    return {"problems": len(problems), "target_tokens": n_tok, "mismatches": len(branches),
            "disagreement_rate": len(branches) / max(n_tok, 1), "draft_better": draft_better,
            "target_better": target_better, "draft_better_rate": draft_better / max(len(branches), 1),
            "target_better_rate": target_better / max(len(branches), 1), "target_correct": t_ok,
            "oracle_correct": oracle}


def consulted_items(task, runs) -> list[dict]:
    """The arbiter's consulted decisions in CoSpec runs (runs: (problems, input_ids,
    DecodeOutput with trace) batches), each a dict: problem (the record), row, prompt
    (unpadded ids), prefix (answer tokens before the candidate), cand, decision (bool), prob
    (the arbiter's probability), features (float32 [len(FEATURE_NAMES)]), hidden (float32 [H]
    or None). Nodes consulted below an accepted EOS in the same round are left out (the
    answer had ended)."""
    items = []
    for chunk, ids, out in runs:
        P = ids.shape[1]
        gens = [out.sequences[b, P:P + out.stats.new_tokens[b]].tolist() for b in range(ids.shape[0])]
        prompts = {}
        for st in out.trace.steps:
            for b, row in enumerate(st["rows"]):
                cons = st["consulted"][b].nonzero()[:, 0].tolist()
                if not cons:
                    continue
                path = [int(x) for x in st["path"][b].tolist() if x >= 0]
                pos = int(st["position"][b])
                if row not in prompts:
                    prompts[row] = task.encode([chunk[row]["question"]])[0][0].tolist()  # unpadded
                for i in cons:
                    k = path.index(int(st["parents"][b, i]))
                    prefix = gens[row][:pos] + [int(st["candidates"][b, n]) for n in path[1:k + 1]]
                    if task.eos_id in prefix:  # past an accepted EOS: the answer ended, no decision
                        continue
                    hid = st["hidden"][b, i] if st.get("hidden") is not None else None
                    items.append({"problem": chunk[row], "row": row, "prompt": prompts[row], "prefix": prefix,
                                  "cand": int(st["candidates"][b, i]), "decision": bool(st["decisions"][b, i]),
                                  "prob": float(st["probs"][b, i]), "features": st["features"][b, i],
                                  "hidden": hid})
    return items


def replay_branches(target, task, items: list[dict], max_new_tokens: int = 64, reject: bool = True):
    """One deviation, then the target's greedy continuation: for each item whether the
    answer ends correct when the draft's candidate is accepted (accept_ok), and, with
    `reject`, when the target's own token is taken there instead (reject_ok, else None)."""
    def run(answers: list[list[int]]) -> list[bool]:  # each distinct (prompt, answer prefix) once
        keys = [(tuple(it["prompt"]), tuple(a)) for it, a in zip(items, answers)]
        uniq = list(dict.fromkeys(keys))
        budget = {k: 0 if (k[1] and k[1][-1] == task.eos_id) else max(max_new_tokens - len(k[1]), 0) for k in uniq}
        conts = dict(zip(uniq, greedy_continue(target, task, [list(p + a) for p, a in uniq], [budget[k] for k in uniq])))
        return [task.is_correct(list(k[1]) + conts[k], it["problem"]["final"]) for it, k in zip(items, keys)]

    acc = run([it["prefix"] + [it["cand"]] for it in items])
    return acc, (run([it["prefix"] for it in items]) if reject else None)


def decision_agreement(target, task, runs, max_new_tokens=64, limit: int | None = None) -> dict:
    """Replays both branches at the mismatches a CoSpec run consulted (runs: the
    (problems, input_ids, DecodeOutput with trace) batches of run_method(..., return_trace=True))
    and compares the arbiter's decisions with the oracle's."""
    items = consulted_items(task, runs)
    if limit is not None:
        items = items[:limit]
    acc, rej = replay_branches(target, task, items, max_new_tokens)
    agree = decisive = agree_decisive = 0
    for it, ok_a, ok_b in zip(items, acc, rej):
        if ok_a != ok_b:
            decisive += 1
            agree_decisive += it["decision"] == ok_a
            agree += it["decision"] == ok_a
        else:
            agree += 1
    n = len(items)
    return {"consulted": n, "decisive": decisive, "agreement": agree / max(n, 1),
            "agreement_decisive": agree_decisive / max(decisive, 1)}
