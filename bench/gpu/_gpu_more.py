"""More GPU correctness cases for bench/gpu/gpu_check.py (issue 10's gaps): outputs allocated
from poisoned blocks, a side stream and a non-default device, > 2^31 elements, the paths
the sanitizer run must reach (split rows, the unstaged walk, residual draws over several
chunks, multi-batch rollbacks, the R = 1 unstaged MLP), tiny temperatures, residual
draws without mass, strided / unaligned features and the argmax walk over several blocks.

Each case compares the raw CUDA op (torch.ops.cospec.*, no wrapper temporaries) against
the CPU kernel on the same values; G.report prints PASS / FAIL lines.
"""

from __future__ import annotations

import math

import torch

import _gpu_cases as G
from cospec_ext import ops

cuda_ops = torch.ops.cospec


def _tensors(out) -> list:
    return [t for t in (out if isinstance(out, (tuple, list)) else [out]) if torch.is_tensor(t)]


def poisoned(fn):
    """fn() launches kernels on prepared device inputs. Runs it once to learn its outputs'
    sizes (keeping those outputs alive), empties the allocator's cache, leaves freed blocks
    of exactly those sizes filled with 0xFF (NaN floats, -1 ints, invalid bools) and runs
    fn again: its outputs then start as garbage, so an element a kernel never writes shows."""
    first = fn()
    sizes = [t.untyped_storage().nbytes() for t in _tensors(first)]
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    held = [torch.full((n,), 0xFF, dtype=torch.uint8, device="cuda") for n in sizes]
    torch.cuda.synchronize()
    del held
    out = fn()
    torch.cuda.synchronize()
    del first
    return out


def _cmp_all(name, got, want, float_tol=None):
    probs = []
    for k, (g, w) in enumerate(zip(_tensors(got), _tensors(want))):
        if g.is_floating_point() and float_tol:
            probs.append(G.close(f"out{k}", g, w, *float_tol))
        else:
            probs.append(G.exact(f"out{k}", g, w))
    G.report(name, G.first_problem(*probs))


def case_poisoned_outputs(gen):
    """Every op through poisoned(): logit_stats (split rows too), verify_tree (greedy, sample,
    argmax), arbiter_score, node_features."""
    for B, N, V in ((2, 3, 70000), (3, 7, 500)):
        cand, par, x = G.make_tree(B, N, V, torch.float32, gen)
        gx, gc, gp = x.cuda(), cand.cuda(), par.cuda()
        _cmp_all(f"poisoned logit_stats [{B},{N},{V}]", poisoned(lambda: cuda_ops.logit_stats(gx, gc, gp)),
                 cuda_ops.logit_stats(x, cand, par), (1e-5, 2e-4))
        u, acc = torch.rand(B, N, generator=gen), torch.rand(B, N, generator=gen) < 0.3
        gu, ga = u.cuda(), acc.cuda()
        _cmp_all(f"poisoned verify_tree greedy [{B},{N},{V}]",
                 poisoned(lambda: cuda_ops.verify_tree(gc, gp, gx, None, ga, 0.0, None)),
                 cuda_ops.verify_tree(cand, par, x, None, acc, 0.0, None))
        am = x.argmax(-1)
        gam = am.cuda()
        _cmp_all(f"poisoned verify_tree argmax [{B},{N},{V}]",
                 poisoned(lambda: cuda_ops.verify_tree(gc, gp, None, gam, ga, 0.0, None)),
                 cuda_ops.verify_tree(cand, par, None, am, acc, 0.0, None))
        got = poisoned(lambda: cuda_ops.verify_tree(gc, gp, gx, None, None, 0.7, gu))
        want = cuda_ops.verify_tree(cand, par, x, None, None, 0.7, u)
        G.report(f"poisoned verify_tree sample [{B},{N},{V}] (path, accept_len)",
                 G.first_problem(G.exact("path", got[0], want[0]), G.exact("accept_len", got[1], want[1]),
                                 None if bool(((got[2] >= 0) & (got[2] < V)).all()) else "next_token out of range"))
        depth = torch.zeros(B, N, dtype=torch.int64)
        for i in range(1, N):
            depth[:, i] = depth.gather(1, par[:, i:i + 1])[:, 0] + 1
        z, ng = torch.zeros(B, N, dtype=torch.int64), torch.zeros(B, dtype=torch.int64)
        gd, gz, gng = depth.cuda(), z.cuda(), ng.cuda()
        _cmp_all(f"poisoned node_features [{B},{N},{V}]",
                 poisoned(lambda: cuda_ops.node_features(gx, gc, gp, gd, gz, gng, gx, int(depth.max()))),
                 cuda_ops.node_features(x, cand, par, depth, z, ng, x, int(depth.max())), (2e-4, 2e-4))
    f, w1, b1 = torch.randn(37, 20, generator=gen), torch.randn(64, 20, generator=gen) / 5, torch.randn(64, generator=gen)
    wo, bo = torch.randn(64, generator=gen) / 8, torch.randn(1, generator=gen)
    gargs = [t.cuda() for t in (f, w1, b1)]
    _cmp_all("poisoned arbiter_score M=37", poisoned(lambda: cuda_ops.arbiter_score(
        *gargs, None, None, wo.cuda(), bo.cuda(), "gelu")),
        cuda_ops.arbiter_score(f, w1, b1, None, None, wo, bo, "gelu"), (1e-4, 1e-4))


def _op_suite(dev, gen):
    """(name, run on `dev`, run on the CPU) for one small case of every op."""
    cand, par, x = G.make_tree(3, 9, 3000, torch.float32, gen)
    u, acc = torch.rand(3, 9, generator=gen), torch.rand(3, 9, generator=gen) < 0.3
    cache = torch.randn(2, 3, 2, 40, 8, generator=gen)
    path = cuda_ops.verify_tree(cand, par, x, None, None, 0.0, None)[0]
    base = torch.tensor([0, 5, 11])
    d = lambda t: t.to(dev)  # noqa: E731
    feats, w1, b1 = torch.randn(11, 6, generator=gen), torch.randn(16, 6, generator=gen), torch.randn(16, generator=gen)
    wo, bo = torch.randn(16, generator=gen), torch.randn(1, generator=gen)
    z, ng = torch.zeros(3, 9, dtype=torch.int64), torch.zeros(3, dtype=torch.int64)
    v = cuda_ops.verify_tree(cand, par, x, None, None, 0.0, None)
    acc_len, nxt = v[1], v[2]
    seq, total = torch.randint(0, 3000, (3, 30), generator=gen), torch.tensor([3, 10, 20])
    anc = torch.eye(9, dtype=torch.bool).expand(3, 9, 9).clone()
    for i in range(1, 9):
        anc[:, i] |= anc[torch.arange(3), par[:, i]]
    pad, root = torch.tensor([0, 2, 5]), torch.tensor([4, 20, 31])
    return [
        ("logit_stats", lambda: cuda_ops.logit_stats(d(x), d(cand), d(par)), lambda: cuda_ops.logit_stats(x, cand, par)),
        ("verify_tree greedy", lambda: cuda_ops.verify_tree(d(cand), d(par), d(x), None, d(acc), 0.0, None),
         lambda: cuda_ops.verify_tree(cand, par, x, None, acc, 0.0, None)),
        ("verify_tree sample", lambda: cuda_ops.verify_tree(d(cand), d(par), d(x), None, None, 0.9, d(u))[:2],
         lambda: cuda_ops.verify_tree(cand, par, x, None, None, 0.9, u)[:2]),
        ("arbiter_score", lambda: cuda_ops.arbiter_score(d(feats), d(w1), d(b1), None, None, d(wo), d(bo), "relu"),
         lambda: cuda_ops.arbiter_score(feats, w1, b1, None, None, wo, bo, "relu")),
        ("kv_rollback", lambda: (lambda c: (cuda_ops.kv_rollback(c, d(base), d(path)), c))(d(cache.clone())),
         lambda: (lambda c: (cuda_ops.kv_rollback(c, base, path), c))(cache.clone())),
        ("node_features", lambda: cuda_ops.node_features(d(x), d(cand), d(par), d(z), d(z), d(ng), d(x), 3),
         lambda: cuda_ops.node_features(x, cand, par, z, z, ng, x, 3)),
        ("commit_tokens", lambda: _commit(d, cand, path, seq, total, acc_len, nxt),
         lambda: _commit(lambda t: t, cand, path, seq, total, acc_len, nxt)),
        ("tree_mask", lambda: _mask(d, pad, root, anc), lambda: _mask(lambda t: t, pad, root, anc)),
    ]


def _commit(d, cand, path, seq, total, acc_len, nxt):
    s, t = d(seq.clone()), d(total.clone())
    counts = cuda_ops.commit_tokens(s, t, d(cand), d(path), d(acc_len), d(nxt), d(torch.tensor([7])), seq.shape[1])
    return counts, s, t


def _mask(d, pad, root, anc):
    out = d(torch.ones(anc.shape[0], 1, anc.shape[1], 40, dtype=torch.bool))
    cuda_ops.tree_mask(out, d(pad), d(root), d(anc))
    return out


def case_streams_and_devices(gen):
    """Every op (commit_tokens and tree_mask too) under a side stream (torch.cuda.stream(s))
    and, with two GPUs, on cuda:1 (inside torch.cuda.device; gpu_check's
    case_guard_on_other_device runs them with the current device left at 0)."""
    devices = ["cuda:0"] + (["cuda:1"] if torch.cuda.device_count() > 1 else [])
    for dev in devices:
        for name, on_dev, on_cpu in _op_suite(torch.device(dev), gen):
            s = torch.cuda.Stream(device=dev)
            with torch.cuda.device(dev), torch.cuda.stream(s):
                got = on_dev()
            s.synchronize()
            want = on_cpu()
            tol = (1e-4, 2e-4) if name in ("logit_stats", "arbiter_score", "node_features") else None
            torch.cuda.synchronize()
            _cmp_all(f"{name} on {dev} under a side stream", got, want, tol)
    if len(devices) == 1:
        print("SKIP ops on cuda:1 under a side stream: only one GPU")


def case_kv_over_2g(gen):
    """kv_rollback on a bfloat16 cache of 2^31 + elements (4.3 GB): compared, not only timed."""
    shape = (2, 33, 8, 8, 4096, 128)  # 2,214,592,512 elements > 2^31 = 2,147,483,648
    if G.STUB:  # CUDA stubbed on the CPU: the same case on a small cache (said in its name)
        shape = (2, 3, 8, 2, 4096, 8)
    n = math.prod(shape)
    cache = torch.randn(shape, dtype=torch.bfloat16, device="cuda")
    B, N, base = shape[2], 24, 4000
    path = torch.full((B, N), -1, dtype=torch.int64)
    for b in range(B):  # the root, then a sorted random subset of the other nodes
        k = int(torch.randint(1, N + 1, (), generator=gen))
        rest = torch.sort(torch.randperm(N - 1, generator=gen)[:k - 1] + 1).values
        path[b, :k] = torch.cat([torch.zeros(1, dtype=torch.int64), rest])
    before = cache[..., base:base + N, :].clone()  # [2, 33, B, 8, N, 128]
    gpath = path.cuda()
    new_len = cuda_ops.kv_rollback(cache, torch.full((B,), base, dtype=torch.int64, device="cuda"), gpath)
    problems = []
    for b in range(B):
        k = int((path[b] >= 0).sum())
        want = before[:, :, b, :, path[b, :k]]
        got = cache[:, :, b, :, base:base + k]
        problems.append(G.exact(f"b={b} moved slots", got, want))
        problems.append(G.exact(f"b={b} slots past the path", cache[:, :, b, :, base + k:base + N],
                                before[:, :, b, :, k:N]))
    problems.append(G.exact("new_len", new_len.cpu(), base + (path >= 0).sum(1)))
    G.report(f"kv_rollback bf16 cache {list(shape)} ({n} elements{' > 2^31' if n > 2**31 else ', shrunk: CUDA stubbed'})",
             G.first_problem(*problems))
    del cache, before


def case_sampling_edges(gen):
    """Tiny temperatures are greedy on both sides; residual draws without mass (x / T
    overflowing, an all-NaN row, an all -inf row) give the same token in [0, V) as the CPU."""
    cand, par, x = G.make_tree(4, 9, 700, torch.float32, gen, p_match=0.5)
    u = torch.rand(4, 9, generator=gen)
    for T in (1e-30, 1e-6):
        got = ops.verify_tree(cand.cuda(), par.cuda(), x.cuda(), None, T, u.cuda())
        want = ops.verify_tree(cand, par, x)
        G.report(f"verify_tree T={T:g} == greedy", G.first_problem(*(G.exact(f, getattr(got, f), getattr(want, f))
                                                                       for f in ("path", "next_token"))))
    x2 = x.clone()
    x2[0, 0, 7] = 1e38
    x2[1, 0] = float("nan")
    x2[2, 0] = float("-inf")
    par2 = torch.arange(-1, 8).expand(4, 9).contiguous()
    cand2 = cand.clone()
    cand2[:, 1] = 3
    got = cuda_ops.verify_tree(cand2.cuda(), par2.cuda(), x2.cuda(), None, None, 0.1, u.cuda())
    want = cuda_ops.verify_tree(cand2, par2, x2, None, None, 0.1, u)
    G.report("verify_tree residual without mass (overflow, NaN, -inf rows)",
             G.first_problem(G.exact("next_token", got[2][:3], want[2][:3]), G.exact("accept_len", got[1][:3], want[1][:3])))


def case_argmax_walk_many_blocks(gen):
    B, N = 300, 12  # walk_argmax_kernel: 128 sequences per block -> 3 blocks
    cand, par, x = G.make_tree(B, N, 50, torch.float32, gen, p_match=0.8)
    am, acc = x.argmax(-1), torch.rand(B, N, generator=gen) < 0.3
    _cmp_all(f"verify_tree argmax walk B={B} (3 blocks)",
             cuda_ops.verify_tree(cand.cuda(), par.cuda(), None, am.cuda(), acc.cuda(), 0.0, None),
             cuda_ops.verify_tree(cand, par, None, am, acc, 0.0, None))


def case_arbiter_layouts(gen):
    """Row stride != F and a base not 16-byte aligned (straight to the op: the wrapper's
    .contiguous() would hide them), and the R = 1 unstaged path (wide F and hidden)."""
    for M, F, H1, H2 in ((13, 7, 33, 0), (9, 12000, 1024, 1024)):
        buf = torch.randn(M, F + 3, generator=gen)
        feats = buf[:, 1:F + 1]  # stride F + 3, base offset 1 float: unaligned
        w1, b1 = torch.randn(H1, F, generator=gen) / F**0.5, torch.randn(H1, generator=gen) * 0.1
        w2 = torch.randn(H2, H1, generator=gen) / H1**0.5 if H2 else None
        b2 = torch.randn(H2, generator=gen) * 0.1 if H2 else None
        wo, bo = torch.randn(H2 or H1, generator=gen) / (H2 or H1) ** 0.5, torch.randn(1, generator=gen)
        gbuf = buf.cuda()
        c = lambda t: None if t is None else t.cuda()  # noqa: E731
        got = cuda_ops.arbiter_score(gbuf[:, 1:F + 1], c(w1), c(b1), c(w2), c(b2), c(wo), c(bo), "gelu")
        want = cuda_ops.arbiter_score(feats, w1, b1, w2, b2, wo, bo, "gelu")
        G.report(f"arbiter_score strided unaligned features M={M} F={F} H={H1}/{H2}",
                 G.close("logit", got, want, 1e-4, 1e-4 * max(1.0, F**0.5 / 8)))


def small_paths(gen):
    """Small cases (for compute-sanitizer) that still reach every path: split logit rows,
    the unstaged walk (N > 2048), a residual draw over several chunks, a multi-batch
    rollback, the R = 1 unstaged MLP."""
    cand, par, x = G.make_tree(1, 2, 70000, torch.float32, gen)  # 2 rows, V = 70000: split
    _cmp_all("small: logit_stats split rows [1,2,70000]", cuda_ops.logit_stats(x.cuda(), cand.cuda(), par.cuda()),
             cuda_ops.logit_stats(x, cand, par), (1e-5, 2e-4))
    cand, par, x = G.make_tree(1, 2100, 16, torch.float32, gen, p_match=0.9)
    _cmp_all("small: verify_tree unstaged N=2100", cuda_ops.verify_tree(cand.cuda(), par.cuda(), x.cuda(), None, None,
                                                                        0.0, None),
             cuda_ops.verify_tree(cand, par, x, None, None, 0.0, None))
    cand, par, x = G.make_tree(2, 4, 5000, torch.float32, gen, p_match=0.0)  # V > 512 threads * 4 items
    u = torch.rand(2, 4, generator=gen)
    got = cuda_ops.verify_tree(cand.cuda(), par.cuda(), x.cuda(), None, None, 2.0, u.cuda())
    G.report("small: verify_tree residual over 3 chunks [2,4,5000]",
             None if bool(((got[2] >= 0) & (got[2] < 5000)).all()) else f"next_token {got[2].tolist()}")
    cache = torch.randn(2, 2, 2, 64, 8, generator=gen)
    path = torch.full((2, 20), -1, dtype=torch.int64)
    path[0, :10] = torch.arange(0, 20, 2)  # j <- 2j
    path[1, :20] = torch.arange(20)  # nothing moves
    base = torch.tensor([3, 7])
    gcache = cache.cuda()
    want = cache.clone()
    cuda_ops.kv_rollback(want, base, path)
    cuda_ops.kv_rollback(gcache, base.cuda(), path.cuda())
    G.report("small: kv_rollback N=20 (3 batches of 8)", G.exact("cache", gcache, want))
    case_arbiter_layouts(gen)


def case_special_rows(gen):
    """NaN, +inf, several +inf, all -inf and huge finite rows: logit_stats, the greedy walk
    and node_features give what the CPU gives (csrc/logit_stats/logit_stats.h)."""
    for dt in (torch.float32, torch.bfloat16):
        for V in (50, 70000):  # 70000 with B * N = 12 rows: split rows on the GPU
            x = torch.randn(6, 2, V, generator=gen) * 3
            x[0, 1, 5] = x[0, 1, 9] = float("nan")
            x[1, 1, 2], x[1, 1, 11] = float("inf"), float("nan")
            x[2, 1, 7] = float("inf")
            x[3, 1, 3] = x[3, 1, 8] = float("inf")
            x[4, 1] = float("-inf")
            x[5, 1] = x[5, 1] * 1e37
            x[5, 1, 4] = 3.3e38
            x = x.to(dt)
            cand = torch.randint(0, V, (6, 2), generator=gen)
            par = torch.tensor([[-1, 0]] * 6)
            want = cuda_ops.logit_stats(x, cand, par)
            got = cuda_ops.logit_stats(x.cuda(), cand.cuda(), par.cuda())
            G.report(f"logit_stats special rows {dt} V={V}", G.first_problem(
                G.exact("argmax", got[0], want[0]),
                *(G.close(f, g, w, 1e-5, 2e-4) for f, g, w in zip(("max", "lse", "entropy", "margin", "cand_lp"),
                                                                   got[1:], want[1:]))))
            xs = x.transpose(0, 1).contiguous()  # [2, 6, V]: row 1's node k is special row k
            c2 = torch.randint(0, V, (2, 6), generator=gen)
            p2 = torch.tensor([[-1, 0, 1, 2, 3, 4]] * 2)
            _cmp_all(f"verify_tree greedy through special rows {dt} V={V}",
                     cuda_ops.verify_tree(c2.cuda(), p2.cuda(), xs.cuda(), None, None, 0.0, None),
                     cuda_ops.verify_tree(c2, p2, xs, None, None, 0.0, None))
            z = torch.zeros(2, 6, dtype=torch.int64)
            _cmp_all(f"node_features special rows {dt} V={V}",
                     cuda_ops.node_features(xs.cuda(), c2.cuda(), p2.cuda(), z.cuda(), z.cuda(),
                                            torch.zeros(2, dtype=torch.int64).cuda(), xs.cuda(), 5),
                     cuda_ops.node_features(xs, c2, p2, z, z, torch.zeros(2, dtype=torch.int64), xs, 5), (1e-4, 1e-3))


def case_round_ops(gen, B: int = 5, N: int = 9, S: int = 64):
    """commit_tokens and tree_mask (the engine's per-round kernels), CUDA vs the CPU kernel on
    the same inputs; outputs of the CUDA call poisoned first (the mask buffer filled with
    0xFF-like True, seq with -1 past each row's length), then garbage values that the CUDA
    kernels must survive without a fault."""
    from cospec_ext import reference

    cand, par, x = G.make_tree(B, N, 40, torch.float32, gen)
    v = reference.verify_tree_ref(cand, par, x)
    seq = torch.randint(0, 40, (B, S), generator=gen)
    total = torch.randint(1, S - N, (B,), generator=gen)
    eos = torch.tensor([int(cand[0, 1]), 7])
    for limit in (S, int(total.min()) + 2):
        want_seq, want_total = seq.clone(), total.clone()
        want = cuda_ops.commit_tokens(want_seq, want_total, cand, v.path, v.accept_len, v.next_token, eos, limit)
        got_seq, got_total = seq.cuda(), total.cuda()
        got = poisoned(lambda: cuda_ops.commit_tokens(got_seq.copy_(seq), got_total.copy_(total), cand.cuda(),
                                                      v.path.cuda(), v.accept_len.cuda(), v.next_token.cuda(),
                                                      eos.cuda(), limit))
        G.report(f"commit_tokens B={B} N={N} limit={limit}",
                 G.first_problem(G.exact("counts", got, want), G.exact("seq", got_seq, want_seq),
                                 G.exact("total", got_total, want_total)))
    anc = torch.zeros(B, N, N, dtype=torch.bool)
    for i in range(N):
        anc[:, i, i] = True
        if i:
            anc[:, i] |= anc[torch.arange(B), par[:, i]]
    root = torch.randint(0, S - N + 1, (B,), generator=gen)
    pad = torch.minimum(torch.randint(0, S, (B,), generator=gen), root)
    for lo, shared in ((0, False), (N // 2, False), (0, True)):
        a = (anc[:1] if shared else anc)[:, lo:, :]
        want = torch.zeros(B, 1, N - lo, S, dtype=torch.bool)
        cuda_ops.tree_mask(want, pad, root, a)
        buf = torch.ones(B + 1, 1, N + 2, S + 5, dtype=torch.bool, device="cuda")  # every entry True
        view = buf[:B, :, : N - lo, :S]
        cuda_ops.tree_mask(view, pad.cuda(), root.cuda(), a.cuda())
        outside = buf.clone()
        outside[:B, :, : N - lo, :S] = True
        G.report(f"tree_mask B={B} S={S} queries {lo}..{N} shared={shared} (strided out)",
                 G.first_problem(G.exact("mask", view, want),
                                 None if bool(outside.all()) else "wrote outside its view"))
    # garbage (3 rows): out-of-range accept_len / path / total, roots past S: no fault, bad rows untouched
    gseq = torch.zeros(3, S, dtype=torch.int64, device="cuda")
    gtot = torch.tensor([-3, S, S - 1], device="cuda")
    acc = torch.tensor([N + 5, -2, 3], device="cuda")
    path = torch.randint(-9, 3 * N, (3, N), generator=gen).cuda()
    if G.STUB:  # the CPU kernel raises on these values where the CUDA kernel must not fault
        G.report("commit_tokens / tree_mask garbage inputs", None, "skipped: CUDA stubbed, the CPU kernel refuses them")
        return
    counts = cuda_ops.commit_tokens(gseq, gtot, cand[:3].cuda(), path, acc, v.next_token[:3].cuda(), eos.cuda(), S)
    cuda_ops.tree_mask(torch.zeros(3, 1, N, S, dtype=torch.bool, device="cuda"), torch.full((3,), -5, device="cuda"),
                       torch.tensor([S, -7, 10**9], device="cuda"), anc[:3].cuda())
    torch.cuda.synchronize()
    bad = counts[0, :2].tolist() == [0, 0] and counts[1, :2].tolist() == [1, 1]
    G.report("commit_tokens / tree_mask garbage inputs (no fault; bad rows reported finished, kept 0)",
             None if bad else f"counts {counts.tolist()}")
