"""`cospec task train-models` (python/cospec_train/train_models.py): a few steps run end to end
under bfloat16 autocast, the large target candidate has the size issue 21 asks for, bad model
names are refused."""

import pytest
import torch

from cospec_train import train_models as tm


def test_a_few_steps_train_and_evaluate_under_autocast(capsys):
    assert tm.main(["--models", "draft", "--draft-steps", "3", "--eval-n", "4", "--no-save", "--amp", "on",
                    "--attn", "sdpa"]) == 0
    out = capsys.readouterr().out
    assert "[draft] step 3/3 loss" in out and "[draft] validation exact-match" in out


def test_amp_keeps_float32_weights_and_moves_them():
    spec = dict(tm.MODEL_SPECS["draft"], seed=3)
    m = tm.train_one("draft", spec, 2, 8, 1e-3, amp=True)
    assert all(p.dtype == torch.float32 for p in m.parameters())
    torch.manual_seed(spec["seed"])
    from transformers import LlamaForCausalLM

    fresh = LlamaForCausalLM(tm.make_config(spec["shape"]))
    assert not torch.equal(fresh.model.layers[0].mlp.up_proj.weight, m.model.layers[0].mlp.up_proj.weight)


def test_shipped_target_is_20_to_60_mib():
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        m = LlamaForCausalLM(tm.make_config(tm.MODEL_SPECS["target"]["shape"]))
    mib = sum(p.numel() for p in m.parameters()) * 4 / 2**20
    assert 20 <= mib <= 60, mib


def test_unknown_model_is_refused():
    with pytest.raises(SystemExit):
        tm.main(["--models", "target-large", "--no-save"])


def test_a_large_model_ships_in_bfloat16_and_loads_into_float32(tmp_path, monkeypatch):
    """Past MAX_FILE_BYTES the file holds bfloat16 (half the bytes); the in-memory model is
    rounded to the same values, and from_pretrained with the default dtype gives float32
    weights equal to it."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from cospec_ext.task.tokenizer import build_tokenizer

    torch.manual_seed(0)
    m = LlamaForCausalLM(tm.make_config(tm.MODEL_SPECS["draft"]["shape"])).eval()
    n = sum(p.numel() for p in m.parameters())
    assert tm.store_dtype(m) == torch.float32
    monkeypatch.setattr(tm, "MAX_FILE_BYTES", 4 * n - 1)
    assert tm.store_dtype(m) == torch.bfloat16
    before = {k: v.clone() for k, v in m.state_dict().items()}
    tm.save(m, build_tokenizer(), str(tmp_path / "m"))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), local_files_only=True)
    for k, v in m.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, before[k].to(torch.bfloat16).float()), k
        assert torch.equal(loaded.state_dict()[k], v), k
