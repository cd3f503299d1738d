"""RL training of the CoSpec arbiter (GRPO-style groups, PPO-clipped policy gradient).

Each update:
  1. rollouts: U prompts x G samples, decoded with
     decode(mode="cospec", sample_arbiter=True, return_trace=True); the arbiter's
     decisions at consulted mismatches are Bernoulli draws a ~ Bern(p_theta(x));
  2. reward per rollout: R = 1[final answer correct] + speed_coef * (tokens per target
     verification round of that rollout) (speed_coef = 0 by default);
  3. advantage A = (R - mean_group(R)) / (std_group(R) + 1e-6) within each prompt's G
     rollouts; every consulted decision of a rollout carries its rollout's A (decisions
     never consulted carry nothing); or, with credit="counterfactual", each decision d
     carries its own: both branches at d are replayed (the draft's token or the target's,
     then the target's greedy continuation; analysis.replay_branches, each distinct
     prefix once) and A_d = R(branch taken) - R(branch not taken), in {-1, 0, 1};
  4. `epochs` full-batch steps of the PPO loss recomputed from the stored features and
     actions:  L = -mean_d[min(r_d A_d, clip(r_d, 1-eps, 1+eps) A_d)] - beta * mean_d H(p_d),
     r_d = pi_theta(a_d | x_d) / pi_old(a_d | x_d).
The arbiter starts as a constant policy (output weights 0, p = init_p), so its feature
normalisation can be set from the first update's rollouts without changing the policy, or,
with `init` (`cospec train --stage rl --init DIR`), from a saved arbiter (the imitation
stage's), keeping its features, sizes and normalisation.

Data-parallel: under torchrun each rank decodes its share of the prompts; decisions are
keyed by rollout id (see decode's rollout_ids), gradients are all-reduced by
DistributedDataParallel and the loss is normalised by the global decision count, so the
run matches the single-process one up to float summation order. With `tp` > 1 the target
is loaded tensor-parallel (transformers' tp plan) over groups of `tp` consecutive ranks
(a 2-D mesh: world / tp data-parallel groups; tp = world is one group): the ranks of a group
decode the same prompts (SPMD), each group its share; the replicated arbiter's gradient is
the same on every rank of a group (the decision count then counts each decision tp times,
as DDP's average over the world does), so the run again matches one process.

Checkpoints (every `ckpt_every` updates, atomic): the arbiter (safetensors + JSON), the
AdamW state (safetensors + JSON) and the update counter; a killed run resumes from the
last one (the JSONL log is cut back to it). Rollouts are seeded by (seed, update), so a
resumed run is identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

import cospec_ext
from cospec_ext.engine import Arbiter
from cospec_ext.engine import FEATURE_NAMES
from cospec_ext.engine.features import HIDDEN_INPUTS, hidden_widths

from .tasks import DEFAULT_DRAFT, DEFAULT_TARGET, DEFAULT_TREE, make_task


@dataclass
class RLConfig:
    task: str = "arith"
    data: str | None = None  # GSM8K JSONL for task="gsm8k"
    target: str = str(DEFAULT_TARGET)
    draft: str = str(DEFAULT_DRAFT)
    out: str = "runs/arbiter"
    updates: int = 150
    prompts: int = 64  # prompts per update (all ranks together)
    group: int = 8  # rollouts per prompt (G)
    epochs: int = 4  # PPO steps per update
    lr: float = 3e-3
    clip: float = 0.2
    entropy_coef: float = 0.01
    speed_coef: float = 0.0
    init_p: float = 0.2
    hidden: tuple = (32, 16)
    features: tuple = FEATURE_NAMES
    hidden_inputs: tuple | None = HIDDEN_INPUTS  # hidden states read (names from HIDDEN_INPUTS, projected
    #   to proj_dim); None: none
    proj_dim: int = 4
    tree: str = DEFAULT_TREE
    max_new_tokens: int = 64
    ckpt_every: int = 10
    seed: int = 0
    threads: int = 1  # torch threads per process (0: torch's default); fixed, so runs repeat exactly
    init: str | None = None  # start from this saved arbiter instead of a constant policy
    credit: str = "rollout"  # "rollout" (GRPO group advantage) or "counterfactual" (per decision)
    tp: int = 1  # under torchrun: 1 = data parallel; > 1: the target tensor-parallel over groups of tp ranks
    extra: dict = field(default_factory=dict)


def _world():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _data_shard(cfg: RLConfig) -> tuple[int, int]:
    """(index, count) of this rank's data shard. With a tensor-parallel target (cfg.tp > 1)
    the world is a 2-D mesh (data parallel x tp, rank = dp_index * tp + tp_index, the layout
    transformers builds): the tp ranks of a group decode the same prompts (SPMD), each group
    its own share; else one shard per rank."""
    rank, world = _world()
    if cfg.tp <= 1:
        return rank, world
    if world % cfg.tp:
        raise ValueError(f"--tp {cfg.tp} must divide the number of processes under torchrun (got {world}): "
                         f"the ranks form {world} / tp data-parallel groups of tp ranks each")
    return rank // cfg.tp, world // cfg.tp


def _allreduce(t: torch.Tensor) -> torch.Tensor:
    if _world()[1] > 1:
        dist.all_reduce(t)
    return t


def load_models(cfg: RLConfig):
    from transformers import AutoModelForCausalLM

    load = lambda d, **kw: AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32,  # noqa
                                                                **kw).eval()
    return load(cfg.target, **(tp_kwargs(cfg.tp, _world()[1]) if cfg.tp > 1 else {})), load(cfg.draft)


def tp_kwargs(tp: int | None = None, world: int | None = None) -> dict:
    """from_pretrained's arguments for transformers' own tensor-parallel plan: over the whole
    process group (tp None or = world), or, for a 2-D mesh, over groups of `tp` consecutive
    ranks with world / tp replicas (DistributedConfig(tp_size, dp_replicate_size): the mesh
    (dp_replicate, fsdp=1, tp); transformers wraps the layers in FSDP2 over a shard group of
    one, which leaves each replica's weights whole). distributed_config on transformers
    >= 5.18, else the older tp_plan keyword (one group only)."""
    import dataclasses

    try:
        from transformers.distributed import DistributedConfig
    except ImportError:
        DistributedConfig = None
    dp = 1 if tp is None or world is None else world // tp
    if DistributedConfig is None:
        if dp > 1:
            raise RuntimeError("a 2-D mesh (--tp smaller than the number of processes) needs transformers >= 5.18 "
                               "(DistributedConfig with dp_replicate_size)")
        return {"tp_plan": "auto"}
    if dp <= 1:
        return {"distributed_config": DistributedConfig(tp_plan="auto")}
    if "dp_replicate_size" not in {f.name for f in dataclasses.fields(DistributedConfig)}:
        raise RuntimeError("a 2-D mesh (--tp smaller than the number of processes) needs a transformers whose "
                           "DistributedConfig has dp_replicate_size")
    return {"distributed_config": DistributedConfig(tp_plan="auto", tp_size=tp, dp_replicate_size=dp)}


def load_all(cfg: RLConfig) -> tuple:
    """(task, target, draft) of a config."""
    return (make_task(cfg.task, cfg.data, cfg.target), *load_models(cfg))


def init_arbiter(cfg: RLConfig, target=None, draft=None) -> Arbiter:
    torch.manual_seed(cfg.seed)
    if cfg.init:
        arb = Arbiter.load(cfg.init)
        arb.validation, arb.threshold = None, 0.5  # RL samples decisions; its threshold is chosen later
        return arb
    names = tuple(cfg.hidden_inputs or ())
    sizes = hidden_widths(names, target.config.hidden_size, draft.config.hidden_size) if names else None
    arb = Arbiter(cfg.features, hidden=cfg.hidden, hidden_sizes=sizes, proj_dim=cfg.proj_dim,
                  hidden_inputs=names or None)
    with torch.no_grad():
        arb.out.weight.zero_()
        arb.out.bias.fill_(math.log(cfg.init_p / (1 - cfg.init_p)))
    return arb


def rollouts(cfg: RLConfig, task, target, draft, arb: Arbiter, update: int):
    """This rank's rollouts of one update -> (feats [D, F], hidden [D, H] or None, actions [D],
    old_logp [D], advantage [D], metrics tensor of global sums)."""
    shard, shards = _data_shard(cfg)
    probs = task.problems(cfg.prompts, seed=cfg.seed * 100003 + update, split="train")
    mine = list(range(shard, cfg.prompts, shards))
    G = cfg.group
    qs = [probs[i]["question"] for i in mine for _ in range(G)]
    ids, mask = task.encode(qs)
    rid = torch.tensor([i * G + g for i in mine for g in range(G)], dtype=torch.int64)
    arb.eval()
    out = cospec_ext.decode(target, draft, ids, mask, mode="cospec", arbiter=arb, sample_arbiter=True,
                            tree=cfg.tree, max_new_tokens=cfg.max_new_tokens, eos_token_id=task.eos_id,
                            pad_token_id=task.pad_id, seed=cfg.seed + 7919 * update, return_trace=True,
                            rollout_ids=rid)
    P = ids.shape[1]
    n_rows = len(qs)
    correct = torch.zeros(n_rows)
    rounds = torch.zeros(n_rows)
    for st in out.trace.steps:
        rounds[st["rows"]] += 1
    for b in range(n_rows):
        gen = out.sequences[b, P:P + out.stats.new_tokens[b]].tolist()
        correct[b] = float(task.is_correct(gen, probs[mine[b // G]]["final"]))
    speed = torch.tensor(out.stats.new_tokens, dtype=torch.float32) / rounds.clamp(min=1)
    reward = correct + cfg.speed_coef * speed
    r = reward.view(-1, G)
    adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, unbiased=False, keepdim=True) + 1e-6)).view(-1)
    cols = [FEATURE_NAMES.index(n) for n in arb.feature_names]
    use_h = arb.hidden_sizes is not None
    if cfg.credit == "counterfactual":
        X, H, A, LP, ADV = _counterfactual(cfg, task, target, [probs[mine[b // G]] for b in range(n_rows)], ids,
                                           out, cols, use_h)
    else:
        X, H, A, LP, ADV = [], [], [], [], []
        for b in range(n_rows):
            f, a, p, *h = out.trace.decisions(b, with_hidden=use_h)
            if f.shape[0] == 0:
                continue
            X.append(f[:, cols])
            if use_h:
                H.append(h[0])
            A.append(a.float())
            p = p.clamp(1e-6, 1 - 1e-6)
            LP.append(torch.where(a, p.log(), (1 - p).log()))
            ADV.append(adv[b].expand(f.shape[0]))
    F = len(cols)
    cat = lambda xs, *s: torch.cat(xs) if xs else torch.zeros(0, *s)  # noqa: E731
    m = torch.tensor([float(n_rows), float(correct.sum()), float(reward.sum()), float(out.stats.arbiter_consulted),
                      float(out.stats.arbiter_accepted), float(sum(out.stats.new_tokens)), float(rounds.sum())])
    hid = cat(H, sum(arb.hidden_sizes)) if use_h else None
    # under TP every rank holds the same rollouts: the sums count them tp times
    return cat(X, F), hid, cat(A), cat(LP), cat(ADV), _allreduce(m) / max(cfg.tp, 1)


def _counterfactual(cfg, task, target, row_problems, ids, out, cols, use_h):
    """Per consulted decision: features, hidden, action, old log-prob and A_d = R(taken) -
    R(not taken) from replaying both branches (module docstring, step 3)."""
    from cospec_ext.task.analysis import consulted_items, replay_branches

    items = consulted_items(task, [(row_problems, ids, out)])
    if not items:
        return [], [], [], [], []
    acc, rej = replay_branches(target, task, items, cfg.max_new_tokens)
    a = torch.tensor([it["decision"] for it in items])
    gain = torch.tensor(acc, dtype=torch.float32) - torch.tensor(rej, dtype=torch.float32)  # accepting's gain
    p = torch.tensor([it["prob"] for it in items]).clamp(1e-6, 1 - 1e-6)
    X = [torch.stack([it["features"] for it in items]).float()[:, cols]]
    H = [torch.stack([it["hidden"] for it in items]).float()] if use_h else []
    return X, H, [a.float()], [torch.where(a, p.log(), (1 - p).log())], [torch.where(a, gain, -gain)]


def ppo_loss(model, X, Hs, A, old_lp, adv, n_global: float, cfg: RLConfig):
    """Sum over this rank's decisions of the clipped surrogate and entropy, / the global count."""
    world = _world()[1]
    logit = model(X, Hs)  # [D]
    lp = torch.where(A > 0.5, torch.nn.functional.logsigmoid(logit), torch.nn.functional.logsigmoid(-logit))
    ratio = torch.exp(lp - old_lp)
    surr = torch.minimum(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv)
    p = torch.sigmoid(logit)
    ent = -(p * torch.log(p.clamp(min=1e-8)) + (1 - p) * torch.log((1 - p).clamp(min=1e-8)))
    # DDP averages gradients over ranks: scale by world so the result is sum / n_global
    return -(surr.sum() + cfg.entropy_coef * ent.sum()) * world / max(n_global, 1.0), ent.detach()


# -- checkpoints ---------------------------------------------------------------------------
def save_checkpoint(path: str, arb: Arbiter, opt: torch.optim.Optimizer, update: int, cfg: RLConfig) -> None:
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    arb.save(os.path.join(tmp, "arbiter"))
    tensors, meta = {}, {"update": update, "config": asdict(cfg), "param_groups": [], "state_keys": {}}
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        for k, v in opt.state.get(p, {}).items():
            tensors[f"{i}.{k}"] = v.detach().cpu().reshape(v.shape).contiguous() if torch.is_tensor(v) else torch.tensor(v)
    meta["param_groups"] = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    save_file(tensors, os.path.join(tmp, "optimizer.safetensors"))
    with open(os.path.join(tmp, "state.json"), "w") as f:
        json.dump(meta, f, indent=1, default=str)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def load_checkpoint(path: str, arb: Arbiter, opt: torch.optim.Optimizer) -> int:
    with open(os.path.join(path, "state.json")) as f:
        meta = json.load(f)
    arb.load_state_dict(Arbiter.load(os.path.join(path, "arbiter")).state_dict())
    tensors = load_file(os.path.join(path, "optimizer.safetensors"))
    params = [p for g in opt.param_groups for p in g["params"]]
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        opt.state[params[int(i)]][k] = v
    for g, saved in zip(opt.param_groups, meta["param_groups"]):
        g.update({k: v for k, v in saved.items() if k in ("lr", "betas", "eps", "weight_decay")})
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    return int(meta["update"])


def _cut_log(log_path: str, upto: int) -> None:
    if not os.path.exists(log_path):
        return
    with open(log_path) as f:
        lines = [ln for ln in f if ln.strip() and json.loads(ln).get("update", 0) <= upto]
    with open(log_path, "w") as f:
        f.writelines(lines)


# -- the loop ----------------------------------------------------------------------------------
def train(cfg: RLConfig, progress: bool = True, models: tuple | None = None) -> Arbiter:
    """The RL loop (module docstring); models: (task, target, draft) already loaded, else from cfg."""
    rank, world = _world()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    task, target, draft = models or load_all(cfg)
    arb = init_arbiter(cfg, target, draft)
    opt = torch.optim.AdamW(arb.parameters(), lr=cfg.lr, weight_decay=0.0)
    os.makedirs(cfg.out, exist_ok=True)
    ckpt, log_path = os.path.join(cfg.out, "checkpoint"), os.path.join(cfg.out, "metrics.jsonl")
    start = 0
    if os.path.exists(os.path.join(ckpt, "state.json")):
        start = load_checkpoint(ckpt, arb, opt)
        if rank == 0:
            _cut_log(log_path, start)
    model = arb
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(arb)
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.updates, initial=start, desc="arbiter RL", unit="upd")
    for update in range(start, cfg.updates):
        t0 = time.perf_counter()
        X, Hs, A, LP, ADV, m = rollouts(cfg, task, target, draft, arb, update)
        n_dec = _allreduce(torch.tensor([float(X.shape[0])]))
        if update == 0 and not cfg.init:  # the policy is constant here, so normalising changes nothing
            s = _allreduce(torch.stack([X.sum(0), (X * X).sum(0)]))
            mean = s[0] / n_dec.clamp(min=1)
            std = (s[1] / n_dec.clamp(min=1) - mean * mean).clamp(min=0).sqrt()
            arb.mean.copy_(mean)
            arb.std.copy_(std.clamp(min=1e-3))
        arb.train()
        losses, ents = [], []
        for _ in range(cfg.epochs):
            loss, ent = ppo_loss(model, X, Hs, A, LP, ADV, float(n_dec), cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            ents.append(float(ent.mean()) if ent.numel() else 0.0)
        rows, correct, reward, consulted, accepted, toks, rounds = m.tolist()
        rec = {"update": update + 1, "accuracy": correct / rows, "reward": reward / rows, "consulted": consulted,
               "accept_rate": accepted / max(consulted, 1), "tokens_per_round": toks / max(rounds, 1),
               "decisions": float(n_dec) / max(cfg.tp, 1), "loss": sum(losses) / len(losses), "entropy": ents[-1],
               "seconds": time.perf_counter() - t0}
        if rank == 0:
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if bar is not None:
                bar.update(1)
                bar.set_postfix(acc=f"{rec['accuracy']:.2f}", acc_rate=f"{rec['accept_rate']:.2f}")
            if (update + 1) % cfg.ckpt_every == 0 or update + 1 == cfg.updates:
                save_checkpoint(ckpt, arb, opt, update + 1, cfg)
        if world > 1:
            dist.barrier()
    if bar is not None:
        bar.close()
    if rank == 0:
        arb.save(os.path.join(cfg.out, "arbiter"))
    return arb.eval()
