"""Assertion helpers whose messages say where and by how much."""

from __future__ import annotations

import torch


def assert_equal(name: str, got: torch.Tensor, want: torch.Tensor) -> None:
    got, want = got.cpu(), want.cpu()
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    bad = (got != want) & ~(got.isnan() & want.isnan()) if got.is_floating_point() else got != want
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {bad.numel()} entries differ; first at {idx}: got {got[idx].item()}, want {want[idx].item()}"
        )


def assert_close_vs_torch(name: str, got: torch.Tensor, ref: torch.Tensor, same_precision: torch.Tensor,
                          factor: float = 2.0, atol: float = 1e-5) -> None:
    """|got - ref| <= factor * max|same_precision - ref| + atol (flash-attention's rule).

    ref is a float64 reference; same_precision is PyTorch's own float32 computation of
    the same quantity on the same inputs.
    """
    got, ref, sp = got.double().cpu(), ref.double().cpu(), same_precision.double().cpu()
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(got)), f"{name}: finite pattern differs"
    assert torch.equal(got[~finite], ref[~finite]), f"{name}: non-finite values differ"
    err = (got - ref).abs()[finite]
    if err.numel() == 0:
        return
    bound = factor * (sp - ref).abs()[finite].max().item() + atol
    worst = err.max().item()
    if worst > bound:
        flat = int(((got - ref).abs().nan_to_num(0) == worst).nonzero()[0].sum())
        raise AssertionError(f"{name}: max error {worst:.3g} > bound {bound:.3g} (near flat index {flat})")


ISAS = ("avx512", "avx2", "base")


def run_under_isas(tmp_path, script_text: str) -> dict:
    """Runs `script_text` (which saves a list of tensors to sys.argv[1]) once per CPU kernel
    build, COSPEC_CPU_ISA = avx512 / avx2 / base, each in a fresh process; returns
    {isa: the saved list}."""
    import os
    import subprocess
    import sys

    script = tmp_path / "isa.py"
    script.write_text(script_text)
    results = {}
    for isa in ISAS:
        out = tmp_path / f"{isa}.pt"
        subprocess.run([sys.executable, str(script), str(out)], check=True, env=dict(os.environ, COSPEC_CPU_ISA=isa))
        results[isa] = torch.load(out)
    return results
