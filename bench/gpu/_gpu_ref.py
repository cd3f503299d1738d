"""GPU check cases of issue 23: CUDA against the float64 reference (cospec_ext.reference), not
only against the CPU kernels, on the rows where the kernels once disagreed with it; and the
layouts, devices and sizes the older cases missed. Used by bench/gpu/gpu_check.py:

  case_sampling_some_nan       sampling over rows with some NaN logits (Z = NaN: every child
                               rejected, the fallback token)
  case_sampling_max_first      x = 1e38 at T = 0.1 (x / T > FLT_MAX) accepted like the reference
  case_greedy_special_walk     a chain whose candidates are the CPU argmax of their parent, so the
                               walk visits NaN, +inf, several +inf, all -inf rows (f32/f16/bf16)
  case_stats_vs_reference      logit_stats special rows incl. a late huge max and ties, every dtype
  case_features_vs_reference   node_features with levels < depth, late-huge-max and f16 rows
  case_tree_mask_layouts       strided slot dim, strided anc last dim, pad > root_slot, pad < 0
  case_guard_on_other_device   ops on cuda:1 with the current device left at 0 (two GPUs only)
  case_over_2g                 logit_stats, verify_tree, node_features on > 2^31 logits
  small_special                the special rows at sanitizer sizes (--small)

Under bench/gpu/_gpu_stub.py (COSPEC_GPU_STUB=1) "CUDA" is the CPU kernel and the > 2^31 case
shrinks (said in its name).
"""

from __future__ import annotations

import math
import os

import torch

import _gpu_cases as G
from cospec_ext import ops, reference

cuda_ops = torch.ops.cospec
STUB = os.environ.get("COSPEC_GPU_STUB") == "1"
NAN, INF = float("nan"), float("inf")
NAME = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}


def special_rows(V: int, dt: torch.dtype, gen: torch.Generator) -> list[tuple[str, torch.Tensor]]:
    """(name, row [V] of dtype dt), V >= 16. 'huge' values are near the dtype's max."""
    big = torch.finfo(dt).max * 0.9
    r = lambda: torch.randn(V, generator=gen) * 3  # noqa: E731
    rows = []

    def add(name, x):
        rows.append((name, x.to(dt)))

    add("random", r())
    x = r(); x[[5, 9]] = NAN; add("some nan", x)  # noqa: E702
    x = r(); x[2], x[11] = INF, NAN; add("nan and +inf", x)  # noqa: E702
    x = r(); x[7] = INF; add("one +inf", x)  # noqa: E702
    x = r(); x[[8, 3, V - 1]] = INF; add("several +inf", x)  # noqa: E702
    add("all -inf", torch.full((V,), -INF))
    x = r(); x[torch.rand(V, generator=gen) < 0.5] = -INF; x[1] = 0.5; add("some -inf", x)  # noqa: E702
    x = torch.zeros(V); x[-2:] = big; add("late huge max", x)  # noqa: E702
    x = r() * (big / 30); x[4] = big; add("huge max first", x)  # noqa: E702
    add("ties", r().round().clamp(-2, 2))
    return rows


def _ref_verify_problems(got, want, fields=("path", "accept_len", "next_token", "consulted", "arbiter_accepted")):
    return [G.exact(f, getattr(got, f), getattr(want, f)) for f in fields]


def case_sampling_some_nan(gen):
    """Rows with some NaN logits (the issue's V = 50, x[5] = NaN, T = 0.5; a NaN in the tail,
    a NaN among -inf only, two NaN): CUDA == reference == CPU (Z = NaN, fallback token)."""
    for V in (50, 70000):
        x = torch.randn(4, 3, V, generator=gen)
        x[0, 0, 5] = NAN
        x[1, 0, V - 1] = NAN
        x[2, 0] = -INF
        x[2, 0, 3] = NAN
        x[3, 0, [0, V // 2]] = NAN
        par = torch.tensor([[-1, 0, 0]] * 4)
        cand = torch.tensor([[int(x[b, 0].nan_to_num(-INF).argmax()), 1, 2] for b in range(4)])
        for T in (0.5, 1.0):
            u = torch.rand(4, 3, generator=gen)
            want = reference.verify_tree_ref(cand, par, x, None, T, u)
            cpu = ops.verify_tree(cand, par, x, None, T, u)
            got = ops.verify_tree(cand.cuda(), par.cuda(), x.cuda(), None, T, u.cuda())
            G.report(f"verify_tree sample some-NaN rows V={V} T={T} (CUDA == float64 reference == CPU)",
                     G.first_problem(*_ref_verify_problems(got, want), *_ref_verify_problems(cpu, want)))


def case_sampling_max_first(gen):
    """x = 1e38 at T = 0.1 and 3e38 beside -3e38: p = 1 for the huge token, the child holding it
    is accepted (CUDA == reference == CPU)."""
    V = 40
    x = torch.randn(3, 3, V, generator=gen)
    x[0, 0, 7] = 1e38
    x[1, 0, 2], x[1, 0, 9] = 3e38, -3e38
    x[2, 0, 4] = -1e38
    par = torch.tensor([[-1, 0, 1]] * 3)
    cand = torch.tensor([[5, 7, 1], [5, 2, 1], [5, int(x[2, 0].argmax()), 1]])
    for T in (0.1, 0.01):
        u = torch.rand(3, 3, generator=gen) * 0.99
        want = reference.verify_tree_ref(cand, par, x, None, T, u)
        cpu = ops.verify_tree(cand, par, x, None, T, u)
        got = ops.verify_tree(cand.cuda(), par.cuda(), x.cuda(), None, T, u.cuda())
        ok = None if want.path[:2, 1].tolist() == [1, 1] else f"reference path {want.path.tolist()}"
        G.report(f"verify_tree sample x=1e38 at T={T} accepted (max subtracted before 1/T)",
                 G.first_problem(ok, *_ref_verify_problems(got, want, ("path", "accept_len")),
                                 *_ref_verify_problems(cpu, want, ("path", "accept_len"))))


def _walk_inputs(rows):
    """[1, n, V] logits and a chain whose candidates are the CPU kernel's argmax of the parent."""
    x = torch.stack([r for _, r in rows])[None]
    am = ops.logit_stats(x).argmax  # the CPU argmax (the first NaN wins, like torch.argmax)
    n = x.shape[1]
    par = (torch.arange(n) - 1)[None]
    cand = torch.zeros(1, n, dtype=torch.int64)
    cand[0, 1:] = am[0, :-1]
    return x, cand, par


def case_greedy_special_walk(gen, dtypes=(torch.float32, torch.float16, torch.bfloat16), Vs=(50, 70000)):
    """The greedy walk visits every special row (the issue's walk with random candidates
    stopped at the NaN root): path, next_token equal the CPU kernel and the reference."""
    for dt in dtypes:
        for V in Vs:
            rows = special_rows(V, dt, gen)
            x, cand, par = _walk_inputs(rows)
            acc = torch.rand(1, x.shape[1], generator=gen) < 0.3
            for a in (None, acc):
                want = reference.verify_tree_ref(cand, par, x, a)
                cpu = ops.verify_tree(cand, par, x, a)
                got = ops.verify_tree(cand.cuda(), par.cuda(), x.cuda(), None if a is None else a.cuda())
                full = None if int(got.accept_len[0]) == x.shape[1] - 1 else \
                    f"walk stopped at node {int(got.accept_len[0])} of {x.shape[1] - 1}"
                G.report(f"verify_tree greedy walk through {len(rows)} special rows {NAME[dt]} V={V} "
                         f"arbiter={a is not None}",
                         G.first_problem(full, *_ref_verify_problems(got, want), *_ref_verify_problems(cpu, want)))


def _stats_problems(got, want):
    return [G.exact("argmax", got.argmax, want.argmax),
            *(G.close(f, getattr(got, f), getattr(want, f), 1e-5, 2e-4)
              for f in ("max_logit", "logsumexp", "entropy", "margin", "cand_logprob"))]


def case_stats_vs_reference(gen, dtypes=(torch.float32, torch.float16, torch.bfloat16), Vs=(50, 5003, 70000)):
    """logit_stats on every special row (a late huge max, ties, some -inf too), unaligned
    strided views: CUDA and CPU each against the float64 reference."""
    for dt in dtypes:
        for V in Vs:
            rows = special_rows(V, dt, gen)
            n = len(rows)
            buf = torch.zeros(1, n, V + 3, dtype=dt)
            buf[0, :, 1:V + 1] = torch.stack([r for _, r in rows])
            x = buf[..., 1:V + 1]
            cand = torch.randint(0, V, (1, n), generator=gen)
            par = (torch.arange(n) - 1)[None]
            want = reference.logit_stats_ref(x, cand, par)
            gbuf = buf.cuda()
            got = ops.logit_stats(gbuf[..., 1:V + 1], cand.cuda(), par.cuda())
            cpu = ops.logit_stats(x, cand, par)
            late = [k for k, (nm, _) in enumerate(rows) if nm == "late huge max"][0]
            ln2 = None if abs(float(got.entropy[0, late]) - math.log(2)) < 1e-5 else \
                f"late huge max entropy {float(got.entropy[0, late])} (want ln 2)"
            G.report(f"logit_stats special rows vs float64 reference {NAME[dt]} V={V} (strided, unaligned)",
                     G.first_problem(ln2, *_stats_problems(got, want), *_stats_problems(cpu, want)))


def _depths(par):
    depth = torch.zeros(par.shape, dtype=torch.int64)
    for i in range(1, par.shape[1]):
        depth[:, i] = depth.gather(1, par[:, i:i + 1])[:, 0] + 1
    return depth


def case_features_vs_reference(gen, dtypes=(torch.float32, torch.float16, torch.bfloat16), V=3000):
    """node_features with levels < depth (1 and depth - 1) on random trees, and on rows with a
    late huge max (entropies ln 2): CUDA and CPU each against the float64 reference."""
    for dt in dtypes:
        B, N = 3, 9
        cand, par, x = G.make_tree(B, N, V, dt, gen)
        big = torch.finfo(dt).max / 20  # look-ahead sums of up to 8 log-probs -big stay finite
        x[0, :, -2:] = big  # every row of sequence 0: a late huge max
        d = (x.float() + torch.randn(x.shape, generator=gen) * 0.1).to(dt)
        d[0] = x[0]
        depth = _depths(par)
        rank = torch.randint(0, 3, par.shape, generator=gen)
        ng = torch.randint(0, 50, (B,), generator=gen)
        for levels in sorted({1, max(int(depth.max()) - 1, 1)}):
            want = reference.node_features_ref(x, cand, par, depth, rank, ng, d, levels)
            cpu = ops.node_features(x, cand, par, depth, rank, ng, d, levels)
            got = ops.node_features(x.cuda(), *(t.cuda() for t in (cand, par, depth, rank, ng)), d.cuda(), levels)
            G.report(f"node_features vs float64 reference {NAME[dt]} levels={levels} < depth={int(depth.max())} "
                     f"(late huge max rows)",
                     G.first_problem(G.close("features", got, want, 5e-4, 5e-4),
                                     G.close("CPU features", cpu, want, 5e-4, 5e-4)))


def case_tree_mask_layouts(gen):
    """tree_mask into a view with a strided slot dim, from anc with a strided last dim, with
    pad > root_slot and negative pad: CUDA == CPU == reference."""
    B, N, S = 4, 6, 40
    par = G.make_parents(B, N, gen)
    anc = torch.zeros(B, N, N, dtype=torch.bool)
    for i in range(N):
        anc[:, i, i] = True
        if i:
            anc[:, i] |= anc[torch.arange(B), par[:, i]]
    wide = torch.zeros(B, N, 2 * N, dtype=torch.bool)
    wide[..., ::2] = anc
    anc_s = wide[..., ::2]  # last-dim stride 2
    root = torch.tensor([10, 3, 0, 20])
    pad = torch.tensor([12, -4, 0, 25])  # pad > root_slot (rows 0, 3), negative pad (row 1)
    want = reference.tree_mask_ref(pad, root, anc, S)
    cpu = torch.ones(B, 1, N, 2 * S, dtype=torch.bool)[..., ::2]
    cuda_ops.tree_mask(cpu, pad, root, anc_s)
    gbuf = torch.ones(B, 1, N, 2 * S, dtype=torch.bool, device="cuda")
    cuda_ops.tree_mask(gbuf[..., ::2], pad.cuda(), root.cuda(), anc_s.cuda())
    G.report("tree_mask strided slot dim, strided anc last dim, pad > root_slot, pad < 0 (vs reference)",
             G.first_problem(G.exact("mask", gbuf[..., ::2], want), G.exact("CPU mask", cpu, want),
                             None if bool(gbuf[..., 1::2].all()) else "wrote between the strided slots"))


def case_guard_on_other_device(gen, suite, compare):
    """Every op with its inputs on cuda:1 while the current device stays 0 (no torch.cuda.device
    context): exercises each op's device guard. Needs two GPUs; with one it says so."""
    if torch.cuda.device_count() < 2:
        print("SKIP ops on cuda:1 with the current device left at 0: only one GPU, so no op's device "
              "guard ran on a non-default device in this run", flush=True)
        return
    torch.cuda.set_device(0)
    for name, on_dev, on_cpu in suite(torch.device("cuda:1"), gen):
        got = on_dev()
        torch.cuda.synchronize("cuda:1")
        compare(f"{name} on cuda:1, current device 0 (device guard)", got, on_cpu(), (1e-4, 2e-4))


def case_over_2g(gen):
    """logit_stats, verify_tree (greedy and sampled) and node_features on bf16 logits of
    > 2^31 elements [1, 3, 716M] (4.3 GB): rows past 2^31 elements compared with the CPU
    kernels and a float64 check of the late row."""
    V = 4000 if STUB else 716_000_000
    note = f" ({3 * V} elements > 2^31)" if 3 * V > 2**31 else f" ({3 * V} elements, shrunk: CUDA stubbed)"
    x = torch.empty(1, 3, V, dtype=torch.bfloat16, device="cuda")
    x.normal_(0, 1, generator=None)
    tok = V - 5  # node 2's argmax, read at offset > 2^31 elements
    x[0, 2, tok] = 40.0
    x[0, 1, 17] = 30.0
    x[0, 0, V // 2] = 30.0
    cand = torch.tensor([[0, V // 2, 17]], device="cuda")
    par = torch.tensor([[-1, 0, 1]], device="cuda")
    got = cuda_ops.logit_stats(x, cand, par)
    xc = x.cpu()
    want = cuda_ops.logit_stats(xc, cand.cpu(), par.cpu())
    row = xc[0, 2].double()
    lse = float(torch.logsumexp(row, 0))
    probs = [G.exact("argmax", got[0], want[0]), G.close("lse", got[2], want[2], 1e-5, 1e-3),
             G.close("entropy", got[3], want[3], 1e-3, 1e-3),
             None if int(got[0][0, 2]) == tok else f"argmax of the last row {int(got[0][0, 2])} != {tok}",
             None if abs(float(got[2][0, 2]) - lse) < 1e-3 * max(1.0, abs(lse)) else "lse of the last row vs float64"]
    G.report(f"logit_stats bf16 [1,3,{V}]{note}", G.first_problem(*probs))
    g = cuda_ops.verify_tree(cand, par, x, None, None, 0.0, None)
    w = cuda_ops.verify_tree(cand.cpu(), par.cpu(), xc, None, None, 0.0, None)
    u = torch.full((1, 3), 0.5)
    gs = cuda_ops.verify_tree(cand, par, x, None, None, 1.0, u.cuda())
    G.report(f"verify_tree greedy + sample bf16 [1,3,{V}]{note}",
             G.first_problem(*(G.exact(f"greedy out{k}", a, b) for k, (a, b) in enumerate(zip(g, w))),
                             None if int(g[1][0]) == 2 and int(g[2][0]) == tok else f"greedy {g[1].tolist()} {g[2].tolist()}",
                             None if int(gs[1][0]) == 2 else f"sampled accept_len {gs[1].tolist()} (p(child) ~ 1)"))
    z = torch.zeros(1, 3, dtype=torch.int64)
    depth = torch.tensor([[0, 1, 2]])
    gf = cuda_ops.node_features(x, cand, par, depth.cuda(), z.cuda(), z[:, 0].cuda(), x, 2)
    wf = cuda_ops.node_features(xc, cand.cpu(), par.cpu(), depth, z, z[:, 0], xc, 2)
    G.report(f"node_features bf16 [1,3,{V}]{note}", G.close("features", gf, wf, 1e-3, 1e-3))
    del x, xc
    if not STUB:
        torch.cuda.empty_cache()


def small_special(gen):
    """The special rows at sanitizer sizes (bench/gpu/gpu_check.py --small): the device-side
    special-row scans, the NaN-propagating sampling reduction and levels < depth run under
    memcheck / racecheck / initcheck too."""
    case_stats_vs_reference(gen, dtypes=(torch.float32, torch.float16), Vs=(50, 70000))
    case_greedy_special_walk(gen, dtypes=(torch.float32, torch.float16), Vs=(50,))
    case_sampling_max_first(gen)
    V = 50
    x = torch.randn(2, 3, V, generator=gen)
    x[0, 0, 5] = NAN
    x[1, 0] = -INF
    x[1, 0, 3] = NAN
    par, cand = torch.tensor([[-1, 0, 0]] * 2), torch.tensor([[0, 1, 2]] * 2)
    u = torch.rand(2, 3, generator=gen)
    want = reference.verify_tree_ref(cand, par, x, None, 0.5, u)
    got = ops.verify_tree(cand.cuda(), par.cuda(), x.cuda(), None, 0.5, u.cuda())
    G.report("small: verify_tree sample some-NaN rows V=50 (vs reference)", G.first_problem(*_ref_verify_problems(got, want)))
    case_features_vs_reference(gen, dtypes=(torch.float16,), V=300)
