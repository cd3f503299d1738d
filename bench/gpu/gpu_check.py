"""GPU check of the cospec CUDA kernels: each op against the CPU kernels, then timing.

    python bench/gpu/gpu_check.py            # every correctness case, then the timing table
    python bench/gpu/gpu_check.py --small    # one tiny case per op (for compute-sanitizer)
    python bench/gpu/gpu_check.py --no-bench # correctness only

Correctness: random inputs (random trees, parents[i] = randint(0, i)) for float32,
float16 and bfloat16; CUDA results of ops.* against ops.* on CPU copies (the CPU
kernels are tested against the references by tests/): integers exactly, floats with
tight tolerances; outputs are allocated from poisoned allocator blocks, and
kv_rollback compares the whole cache (moved and untouched slots). Garbage inputs
(invalid trees, tokens, paths, base_len) go straight to torch.ops.cospec.* without
validation: the kernels must not fault (run --small under compute-sanitizer).
bench/gpu/_gpu_more.py adds: outputs allocated from poisoned (0xFF) blocks, every op under a
side stream and on cuda:1 (with two GPUs), a > 2^31-element kv_rollback compared slot by
slot, tiny temperatures and residual draws without mass, the argmax walk over several
blocks, strided unaligned arbiter features and the R = 1 unstaged MLP; --small also runs
the paths the sanitizers must see (split rows, the unstaged walk, multi-chunk residuals,
multi-batch rollbacks). bench/gpu/_gpu_ref.py (issue 23) compares CUDA with the float64
reference (not only with the CPU kernels) on special rows: sampling with some NaN, x = 1e38
at T = 0.1, a greedy walk through every special row, a late huge max, levels < depth, float16;
tree_mask layouts and pads; the device guard on cuda:1; > 2^31 elements for logit_stats,
verify_tree and node_features; --small runs the special rows too.
Timing: median of 50 CUDA-event timings per op; GB/s counts the bytes the kernel must
read + write; % is of the device copy bandwidth measured in the same run.
Exit status 1 when any case fails.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _gpu_cases as G  # noqa: E402
import _gpu_more as M  # noqa: E402
import _gpu_ref as R  # noqa: E402

import cospec_ext  # noqa: E402
from cospec_ext import ops, reference  # noqa: E402

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
NAME = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16", torch.int8: "i8"}
cuda_ops = torch.ops.cospec


def cuda_like(x: torch.Tensor) -> torch.Tensor:
    """x on the GPU with the same sizes, strides and storage offset."""
    if x.numel() == 0:
        return x.cuda()
    n = x.storage_offset() + sum((s - 1) * st for s, st in zip(x.shape, x.stride())) + 1
    g = torch.zeros(n, dtype=x.dtype, device="cuda").as_strided(x.shape, x.stride(), x.storage_offset())
    return g.copy_(x)


# ---------------------------------------------------------------------------------------------
def case_logit_stats(dt, B, N, V, gen, tree=True, pad=0, specials=True):
    name = f"logit_stats {NAME[dt]} [{B},{N},{V}] tree={tree} pad={pad}"
    cand, par, x = G.make_tree(B, N, V, dt, gen, pad=pad)
    if specials and V > 8:
        x[..., 5] = float("-inf")
        x[0, 0, :] = x[0, 0, :].round()  # ties: the lowest index must win
        x[-1, -1, 2] = x[-1, -1, 7] = 100.0
    args = (cand, par) if tree else ()
    want = ops.logit_stats(x, *args)
    G.poison([B * N * 8, B * N * 4], copies=6)
    got = ops.logit_stats(cuda_like(x), *(t.cuda() for t in args))
    G.report(name, G.first_problem(
        G.exact("argmax", got.argmax, want.argmax),
        G.exact("max_logit", got.max_logit, want.max_logit),
        G.exact("margin", got.margin, want.margin),
        G.close("logsumexp", got.logsumexp, want.logsumexp, 1e-5, 1e-4),
        G.close("entropy", got.entropy, want.entropy, 2e-4, 2e-4),
        G.close("cand_logprob", got.cand_logprob, want.cand_logprob, 1e-5, 2e-4)))


def case_verify(dt, B, N, V, gen, mode, arbiter=False, pad=0, T=0.5, p_match=0.8):
    name = f"verify_tree {mode} {NAME[dt]} [{B},{N},{V}] arbiter={arbiter} pad={pad}"
    cand, par, x = G.make_tree(B, N, V, dt, gen, p_match=p_match, pad=pad)
    acc = torch.rand(B, N, generator=gen) < 0.3 if arbiter else None
    unif = torch.rand(B, N, generator=gen)
    kw = {}
    if mode == "argmax":
        kw = dict(target_argmax=x.float().argmax(-1))
        x = None
    temp = T if mode == "sample" else 0.0
    want = ops.verify_tree(cand, par, x, acc, temp, unif if temp else None, **kw)
    G.poison([B * N * 8, B * N, B * 8])
    gkw = {k: v.cuda() for k, v in kw.items()}
    got = ops.verify_tree(cand.cuda(), par.cuda(), None if x is None else cuda_like(x),
                          None if acc is None else acc.cuda(), temp,
                          unif.cuda() if temp else None, **gkw)
    problem = G.first_problem(*(G.exact(f, getattr(got, f), getattr(want, f))
                                for f in ("path", "accept_len", "consulted", "arbiter_accepted")))
    note = ""
    if problem is None and temp:  # residual draws: float rounding may pick a CDF neighbour
        diff = (got.next_token.cpu() != want.next_token).nonzero().flatten().tolist()
        for b in diff:
            cur = int(want.path[b, int(want.accept_len[b])])
            kids = [int(cand[b, i]) for i in range(N) if int(par[b, i]) == cur]
            if not G.residual_ok(x[b, cur].float(), T, kids, float(unif[b, 0]), int(got.next_token[b]), 1e-5):
                problem = f"next_token[{b}] = {int(got.next_token[b])} is not the residual draw (CPU: {int(want.next_token[b])})"
                break
        note = f"{len(diff)} residual draw(s) differ within CDF rounding" if diff and problem is None else ""
    elif problem is None:
        problem = G.exact("next_token", got.next_token, want.next_token)
    G.report(name, problem, note)


def case_arbiter(dt, M, F, H1, H2, act, gen, strided=False):
    name = f"arbiter_score {NAME[dt]} M={M} F={F} H={H1}/{H2} {act} strided={strided}"
    feats = torch.randn(M, 2 * F if strided else F, generator=gen).to(dt)
    if strided:
        feats = feats[:, ::2]
    w1, b1 = torch.randn(H1, F, generator=gen) / F**0.5, torch.randn(H1, generator=gen) * 0.1
    w2 = torch.randn(H2, H1, generator=gen) / H1**0.5 if H2 else None
    b2 = torch.randn(H2, generator=gen) * 0.1 if H2 else None
    wo, bo = torch.randn(H2 or H1, generator=gen) / (H2 or H1) ** 0.5, torch.randn(1, generator=gen)
    want = ops.arbiter_score(feats, w1, b1, w2, b2, w_out=wo, b_out=bo, activation=act)
    c = lambda t: None if t is None else t.cuda()  # noqa: E731
    G.poison([M * 4])
    got = ops.arbiter_score(cuda_like(feats), c(w1), c(b1), c(w2), c(b2), w_out=c(wo), b_out=c(bo), activation=act)
    G.report(name, G.close("logit", got, want, 1e-4, 1e-4 * max(1.0, F**0.5 / 8)))


def case_linear_rows(dt, M, K, N, gen, bias=True):
    """linear_rows on CUDA (the documented cuBLAS fallback) against the float64 reference."""
    name = f"linear_rows {NAME[dt]} M={M} K={K} N={N} bias={bias}"
    x, w = torch.randn(M, K, generator=gen).to(dt), torch.randn(N, K, generator=gen).to(dt)
    b = torch.randn(N, generator=gen).to(dt) if bias else None
    want = reference.linear_rows_ref(x, w, b)
    got = ops.linear_rows(cuda_like(x), w.cuda(), None if b is None else b.cuda())
    tol = 1e-4 * K**0.5 if dt == torch.float32 else 2e-2 * K**0.5
    G.report(name, G.close("y", got, want, 1e-2 if dt != torch.float32 else 1e-5, tol))


def case_linear_packed(M, K, N, gen, bias=True):
    """linear_packed on CUDA (the documented cuBLAS fallback over W rebuilt from its panels)
    against the float64 reference built from the panels."""
    name = f"linear_packed float32 M={M} K={K} N={N} bias={bias}"
    x, w = torch.randn(M, K, generator=gen), torch.randn(N, K, generator=gen)
    b = torch.randn(N, generator=gen) if bias else None
    packed = ops.pack_weight(w)
    want = reference.linear_packed_ref(x, packed, N, b)
    got = ops.linear_packed(cuda_like(x), packed.cuda(), N, None if b is None else b.cuda())
    G.report(name, G.close("y", got, want, 1e-5, 1e-4 * K**0.5))


def case_linear_auto(M, K, N, gen, rows_min=17):
    """linear_auto on CUDA (linear_packed's or linear_rows' CUDA kernel by M) against the float64
    reference."""
    name = f"linear_auto float32 M={M} K={K} N={N} packed_rows_min={rows_min}"
    x, w, b = torch.randn(M, K, generator=gen), torch.randn(N, K, generator=gen), torch.randn(N, generator=gen)
    want = reference.linear_rows_ref(x, w, b)
    got = ops.linear_auto(cuda_like(x), w.cuda(), ops.pack_weight(w).cuda(), b.cuda(), packed_rows_min=rows_min)
    G.report(name, G.close("y", got, want, 1e-5, 1e-4 * K**0.5))


def case_kv(dt, lead, B, H, S, D, N, gen, col_offset=0):
    name = f"kv_rollback {NAME[dt]} cache {list(lead)}+[{B},{H},{S},{D}] N={N} col_offset={col_offset}"
    full = (torch.randn(*lead, B, H, S, D + col_offset, generator=gen) * 50).to(dt)
    cache, gfull = full[..., col_offset:], cuda_like(full)
    gcache = gfull[..., col_offset:]
    cand, par, x = G.make_tree(B, N, 64, torch.float32, gen, p_match=0.8)
    path = ops.verify_tree(cand, par, x).path
    path[0] = -1
    path[0, 0] = 0  # one sequence accepts nothing
    base_len = torch.randint(0, S - N + 1, (B,), generator=gen)
    want_cache = cache.clone()
    want_len = ops.kv_rollback(want_cache, base_len, path)
    got_len = ops.kv_rollback(gcache, base_len.cuda(), path.cuda())
    G.report(name, G.first_problem(G.exact("new_len", got_len, want_len), G.exact("cache", gcache, want_cache),
                                   G.exact("padding columns", gfull[..., :col_offset], full[..., :col_offset])))


def case_features(dt, B, N, V, gen, shared_tree=False, pad=0):
    name = f"node_features {NAME[dt]} [{B},{N},{V}] shared_tree={shared_tree} pad={pad}"
    cand, par, x = G.make_tree(B, N, V, dt, gen, pad=pad)
    d = (x.float() + torch.randn(x.shape, generator=gen)).to(dt)
    if shared_tree:
        par = par[:1]
    depth = torch.zeros(par.shape, dtype=torch.int64)
    for i in range(1, N):
        depth[:, i] = depth.gather(1, par[:, i:i + 1])[:, 0] + 1
    rank = torch.randint(0, 3, par.shape, generator=gen)
    ngen = torch.randint(0, 100, (B,), generator=gen)
    levels = int(depth.max())
    want = ops.node_features(x, cand, par, depth, rank, ngen, d, levels)
    G.poison([B * N * 20 * 4], copies=6)
    got = ops.node_features(cuda_like(x), *(t.cuda() for t in (cand, par, depth, rank, ngen)), cuda_like(d), levels)
    G.report(name, G.close("features", got, want, 2e-4, 2e-4))


def case_garbage(gen):
    """Invalid values straight to the kernels (no validation): must not fault."""
    if G.STUB:  # the CPU kernels raise on these values where the CUDA kernels must not fault
        G.report("garbage inputs", None, "skipped: CUDA stubbed, the CPU kernels refuse them")
        return
    B, N, V = 3, 24, 300
    x = torch.randn(B, N, V, device="cuda")
    cand = torch.randint(-1000, 1000, (B, N), generator=gen).cuda()
    par = torch.randint(-5, N + 5, (B, N), generator=gen).cuda()
    unif = torch.rand(B, N, device="cuda")
    acc = torch.rand(B, N, device="cuda") < 0.5
    cuda_ops.logit_stats(x, cand, par)
    cuda_ops.verify_tree(cand, par, x, None, acc, 0.0, None)
    cuda_ops.verify_tree(cand, par, x, None, acc, 0.9, unif)
    cuda_ops.verify_tree(cand, par, None, cand, None, 0.0, None)
    z = torch.zeros(B, N, dtype=torch.int64, device="cuda")
    cuda_ops.node_features(x, cand, par, z, z, torch.zeros(B, dtype=torch.int64, device="cuda"), x, 1000)
    cache = torch.randn(2, B, 2, 40, 8, device="cuda")
    before = cache.clone()
    path = torch.randint(-3, 60, (B, N), generator=gen).cuda()
    cuda_ops.kv_rollback(cache, torch.tensor([-4, 10, 1000], device="cuda"), path)
    torch.cuda.synchronize()
    G.report("garbage inputs (no fault; out-of-range base_len rows untouched)",
             G.first_problem(G.exact("row b=0", cache[:, 0], before[:, 0]), G.exact("row b=2", cache[:, 2], before[:, 2])))


def correctness(small: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    if small:
        case_logit_stats(torch.float32, 2, 3, 100, gen, pad=3)
        case_verify(torch.bfloat16, 2, 6, 50, gen, "greedy", arbiter=True)
        case_verify(torch.float32, 2, 6, 50, gen, "sample", arbiter=True, p_match=0.3)
        case_verify(torch.float32, 2, 6, 50, gen, "argmax", arbiter=True)
        case_arbiter(torch.float16, 5, 8, 16, 8, "gelu", gen)
        case_kv(torch.bfloat16, (2,), 2, 2, 20, 8, 6, gen)
        case_features(torch.float32, 2, 6, 50, gen)
        case_linear_rows(torch.float32, 5, 33, 17, gen)
        case_linear_packed(20, 33, 50, gen)
        case_linear_auto(20, 33, 50, gen)
        M.small_paths(gen)
        M.case_round_ops(gen, B=3, N=5, S=24)
        R.small_special(gen)
        R.case_tree_mask_layouts(gen)
        case_garbage(gen)
        return
    for dt in DTYPES:
        case_logit_stats(dt, 2, 5, 1000, gen)
        case_logit_stats(dt, 3, 7, 32003, gen, tree=False, pad=5)
        case_logit_stats(dt, 1, 16, 152064, gen)
        case_logit_stats(dt, 4, 64, 32000, gen, pad=8)
        case_logit_stats(dt, 2, 3, 1, gen, specials=False)
        case_logit_stats(dt, 64, 40, 77, gen, pad=1)
        for mode in ("greedy", "sample"):
            case_verify(dt, 4, 16, 32000, gen, mode)
            case_verify(dt, 3, 64, 5003, gen, mode, arbiter=True, pad=3)
            case_verify(dt, 2, 64, 152064, gen, mode, p_match=0.95)
            case_verify(dt, 8, 1, 100, gen, mode)
            case_verify(dt, 2, 2100, 64, gen, mode, arbiter=True)  # N > shared-memory staging
        case_verify(dt, 2, 20, 3000, gen, "sample", T=0.3, p_match=0.1)
        case_verify(dt, 4, 32, 5003, gen, "sample", T=1.0, arbiter=True)
        case_arbiter(dt, 37, 32, 128, 64, "gelu", gen)
        case_arbiter(dt, 4096, 32, 128, 64, "relu", gen)
        case_arbiter(dt, 0, 32, 128, 64, "gelu", gen)
        case_arbiter(dt, 13, 7, 33, 0, "gelu", gen, strided=True)
        case_arbiter(dt, 9, 40, 1024, 1024, "gelu", gen)
        case_arbiter(dt, 10, 13000, 8, 0, "relu", gen)
        case_kv(dt, (2, 3), 4, 2, 100, 128, 33, gen)
        case_kv(dt, (2,), 3, 2, 40, 3, 9, gen)
        case_kv(dt, (1,), 2, 4, 64, 64, 17, gen, col_offset=1)
        case_features(dt, 8, 5, 32000, gen, shared_tree=True)
        case_features(dt, 4, 33, 5003, gen, pad=3)
        case_features(dt, 2, 3, 1, gen)
        case_linear_rows(dt, 1, 576, 1536, gen)
        case_linear_rows(dt, 8, 129, 77, gen, bias=False)
        case_linear_rows(dt, 16, 2048, 300, gen)
    case_linear_packed(48, 384, 1024, gen)
    case_linear_packed(17, 100, 97, gen, bias=False)
    case_linear_auto(24, 384, 1024, gen)
    case_linear_auto(9, 384, 1024, gen)
    case_verify(torch.float32, 6, 40, 1000, gen, "argmax", arbiter=True)
    case_kv(torch.int8, (2,), 3, 2, 50, 20, 16, gen, col_offset=4)
    M.case_poisoned_outputs(gen)
    M.case_streams_and_devices(gen)
    M.case_sampling_edges(gen)
    M.case_argmax_walk_many_blocks(gen)
    M.case_arbiter_layouts(gen)
    M.case_special_rows(gen)
    M.case_kv_over_2g(gen)
    M.case_round_ops(gen)
    M.case_round_ops(gen, B=300, N=17, S=200)
    # issue 23: against the float64 reference, layouts, devices, > 2^31 elements
    R.case_sampling_some_nan(gen)
    R.case_sampling_max_first(gen)
    R.case_greedy_special_walk(gen)
    R.case_stats_vs_reference(gen)
    R.case_features_vs_reference(gen)
    R.case_tree_mask_layouts(gen)
    R.case_guard_on_other_device(gen, M._op_suite, M._cmp_all)
    R.case_over_2g(gen)
    case_garbage(gen)


# ---------------------------------------------------------------------------------------------
def bench() -> None:
    bw = G.copy_bandwidth_gbs()
    rows = [("copy_ (1 GiB)", "", "u8", 2 * (1 << 30) / bw / 1e3, bw)]
    torch.manual_seed(0)

    def add(op, shape, dt, fn, nbytes):
        us = G.gpu_time_us(fn)
        rows.append((op, shape, NAME[dt], us, nbytes / (us * 1e-6) / 1e9))

    for B in (1, 8):
        for N in (16, 64):
            par = G.make_parents(B, N, torch.Generator().manual_seed(B * N)).cuda()
            for V in (32000, 152064):
                shape = f"B={B} N={N} V={V}"
                for dt in (torch.bfloat16, torch.float32):
                    x = (torch.randn(B, N, V, device="cuda") * 3).to(dt)
                    am = x.argmax(-1)
                    cand = torch.gather(am, 1, par.clamp(min=0))  # all-accept tree: deep walks
                    cand[torch.rand(B, N, device="cuda") < 0.2] = 0
                    out_bytes = B * N * (8 + 5 * 4)
                    add("logit_stats", shape, dt, lambda: cuda_ops.logit_stats(x, cand, par),
                        x.numel() * x.element_size() + out_bytes)
                    if dt != torch.bfloat16:
                        continue
                    row = V * x.element_size()
                    g = cuda_ops.verify_tree(cand, par, x, None, None, 0.0, None)
                    add("verify_tree greedy", shape + f" visited={int((g[1] + 1).sum())}", dt,
                        lambda: cuda_ops.verify_tree(cand, par, x, None, None, 0.0, None),
                        int((g[1] + 1).sum()) * row)
                    u = torch.rand(B, N, device="cuda")
                    s = cuda_ops.verify_tree(cand, par, x, None, None, 1.0, u)
                    add("verify_tree sample", shape + f" visited={int((s[1] + 1).sum())}", dt,
                        lambda: cuda_ops.verify_tree(cand, par, x, None, None, 1.0, u),
                        int((s[1] + 2).sum()) * row)  # + the residual pass over the last row
                    del x
    M, F, H1, H2 = 4096, 32, 128, 64
    w1, b1 = torch.randn(H1, F, device="cuda"), torch.randn(H1, device="cuda")
    w2, b2 = torch.randn(H2, H1, device="cuda"), torch.randn(H2, device="cuda")
    wo, bo = torch.randn(H2, device="cuda"), torch.randn(1, device="cuda")
    for dt in (torch.bfloat16, torch.float32):
        f = torch.randn(M, F, device="cuda").to(dt)
        add("arbiter_score", f"M={M} F={F} H={H1}/{H2}", dt,
            lambda: cuda_ops.arbiter_score(f, w1, b1, w2, b2, wo, bo, "gelu"),
            f.numel() * f.element_size() + M * 4 + 4 * (w1.numel() + w2.numel()))
    for B, N, V in ((1, 5, 32000), (1, 40, 32000), (8, 5, 32000), (64, 5, 32000), (8, 16, 152064)):
        par = G.make_parents(B, N, torch.Generator().manual_seed(N)).cuda()
        x = (torch.randn(B, N, V, device="cuda") * 3).to(torch.bfloat16)
        d = (torch.randn(B, N, V, device="cuda") * 3).to(torch.bfloat16)
        cand = torch.randint(0, V, (B, N), device="cuda")
        z = torch.zeros(B, N, dtype=torch.int64, device="cuda")
        ng = torch.zeros(B, dtype=torch.int64, device="cuda")
        # reads: the node's row, its parent's twice (stats, then KL and rank) and the draft's twice
        add("node_features", f"B={B} N={N} V={V}", torch.bfloat16,
            lambda: cuda_ops.node_features(x, cand, par, z, z, ng, d, N), 5 * x.numel() * 2 + B * N * 80)
        del x, d
    S = 1100 if G.STUB else 4096  # stubbed CUDA: a smaller cache, the same moves
    cache = torch.randn(2, 24, 8, 8, S, 128, device="cuda", dtype=torch.bfloat16)
    for B in (1, 8):
        for N in (16, 64):
            c = cache[:, :, :B]
            path = torch.full((B, N), -1, dtype=torch.int64, device="cuda")
            path[:, : N // 2] = torch.arange(0, N, 2, device="cuda")  # j <- 2j: N/2 - 1 moves
            base = torch.full((B,), 1000, dtype=torch.int64, device="cuda")
            moved = 2 * 24 * B * 8 * (N // 2 - 1) * 128 * 2
            add("kv_rollback", f"[2,24,{B},8,{S},128] N={N}", torch.bfloat16,
                lambda: cuda_ops.kv_rollback(c, base, path), 2 * moved)
    del cache

    print(f"\n{'op':<20} {'shape':<34} {'dtype':<5} {'median us':>10} {'GB/s':>8} {'% copy':>7}")
    for op, shape, dt, us, gbs in rows:
        print(f"{op:<20} {shape:<34} {dt:<5} {us:>10.1f} {gbs:>8.0f} {100 * gbs / bw:>6.0f}%")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="one tiny case per op, no timing")
    ap.add_argument("--no-bench", action="store_true", help="skip the timing table")
    a = ap.parse_args()
    if not torch.cuda.is_available() or not cospec_ext.BUILT_WITH_CUDA:
        print("FAIL: needs a GPU and cospec_ext built with CUDA "
              f"(cuda available: {torch.cuda.is_available()}, built with CUDA: {cospec_ext.BUILT_WITH_CUDA})")
        return 1
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  archs {cospec_ext._C.cuda_archs}")
    correctness(a.small)
    if not a.small and not a.no_bench:
        bench()
    print(f"\n{len(G.FAILS)} failure(s)" + (": " + ", ".join(G.FAILS) if G.FAILS else ""))
    return 1 if G.FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
