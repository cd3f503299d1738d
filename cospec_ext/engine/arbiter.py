"""`cospec_ext.Arbiter`: the learned policy consulted at draft/target mismatches.

    z = (x - mean) / std                       x float32 [M, F] (columns `feature_names`)
    [z = concat(z, P hs)]                      optional: hs [M, sum(hidden_sizes)], the models'
                                               last hidden states named by `hidden_inputs`
                                               (target/draft at the parent, target at the
                                               candidate; engine/features.py), projected to
                                               `proj_dim` (a library matmul)
    h = act(z W1^T + b1) [-> act(h W2^T + b2)]
    logit = h . w_out + b_out;  p = sigmoid(logit)  = P(accepting the draft's token leads
                                                      to a correct final answer)
`forward` is the differentiable torch composition (training); `predict_proba` folds the
normalisation into the first layer and runs the fused `arbiter_score` kernel (decoding).
Saved as safetensors (weights) + JSON (version, feature names, sizes, activation,
normalisation); loading never unpickles. A `validation.json` beside them (written by
`cospec train`'s validation stage) holds the threshold chosen on validation data, which
`threshold` then defaults to; files of format 1 (parent features, two hidden inputs)
still load.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .. import ops
from .features import FEATURE_NAMES, HIDDEN_INPUTS

FORMAT_VERSION = 2


class Arbiter(torch.nn.Module):
    def __init__(self, feature_names: Sequence[str] = FEATURE_NAMES, hidden: Sequence[int] = (32, 16),
                 activation: str = "gelu", mean: torch.Tensor | None = None, std: torch.Tensor | None = None,
                 hidden_sizes: Sequence[int] | None = None, proj_dim: int = 8,
                 hidden_inputs: Sequence[str] | None = None):
        super().__init__()
        names = tuple(feature_names)
        bad = [n for n in names if n not in FEATURE_NAMES]
        if bad or not names:
            raise ValueError(f"`feature_names` must be a non-empty subset of {list(FEATURE_NAMES)}; unknown: {bad}")
        if not 1 <= len(hidden) <= 2 or not all(1 <= int(h) <= 1024 for h in hidden):
            raise ValueError(f"`hidden` must list 1 or 2 widths in [1, 1024], got {list(hidden)}")
        if activation not in ("gelu", "relu"):
            raise ValueError(f"`activation` must be 'gelu' or 'relu', got {activation!r}")
        self.feature_names, self.hidden, self.activation = names, tuple(int(h) for h in hidden), activation
        self.in_features = len(names)
        F_ = self.in_features
        self.register_buffer("mean", torch.zeros(F_) if mean is None else torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.ones(F_) if std is None else torch.as_tensor(std, dtype=torch.float32))
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes) if hidden_sizes else None
        self.proj_dim = int(proj_dim) if self.hidden_sizes else 0
        self.hidden_inputs = None
        self.threshold = 0.5  # the decision threshold; validation.json beside a saved arbiter sets it
        self.validation: dict | None = None
        if self.hidden_sizes:
            names = tuple(hidden_inputs) if hidden_inputs else HIDDEN_INPUTS[:2]
            if (len(self.hidden_sizes) != len(names) or min(self.hidden_sizes) < 1 or not 1 <= self.proj_dim <= 256
                    or any(n not in HIDDEN_INPUTS for n in names) or len(set(names)) != len(names)):
                raise ValueError(f"`hidden_sizes` {hidden_sizes} must give one width per hidden input {list(names)} "
                                 f"(names from {list(HIDDEN_INPUTS)}) and 1 <= proj_dim <= 256 (got {proj_dim})")
            self.hidden_inputs = names
            self.proj = torch.nn.Linear(sum(self.hidden_sizes), self.proj_dim)
        widths = [F_ + self.proj_dim, *self.hidden]
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = torch.nn.Linear(widths[-1], 1)

    def _act(self, x):
        return F.gelu(x) if self.activation == "gelu" else F.relu(x)

    def _inputs(self, x: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
        z = (x.float() - self.mean) / self.std
        if self.hidden_sizes:
            if hidden is None or hidden.dim() != 2 or hidden.shape != (x.shape[0], sum(self.hidden_sizes)):
                raise ValueError(f"this arbiter needs `hidden` [M, {sum(self.hidden_sizes)}] beside its features, got "
                                 f"{None if hidden is None else list(hidden.shape)}")
            z = torch.cat([z, self.proj(hidden.float())], dim=-1)
        return z

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """x float32 [M, F] (+ hidden [M, H_t + H_d]) -> logits float32 [M] (differentiable)."""
        h = self._inputs(x, hidden)
        for layer in self.layers:
            h = self._act(layer(h))
        return self.out(h)[:, 0]

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """x float32 [M, F] (+ hidden [M, sum(hidden_sizes)]) -> P(accept) float32 [M]: the
        projection P hs is a library matmul, the MLP (normalisation folded into its first
        layer, _folded) runs in the fused arbiter_score kernel over [x | P hs]."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"arbiter features must be [M, {self.in_features}], got {list(x.shape)}")
        if self.hidden_sizes and (hidden is None or hidden.dim() != 2
                                  or hidden.shape != (x.shape[0], sum(self.hidden_sizes))):
            raise ValueError(f"this arbiter needs `hidden` [M, {sum(self.hidden_sizes)}] beside its features, got "
                             f"{None if hidden is None else list(hidden.shape)}")
        if x.shape[0] == 0:
            return torch.zeros(0, device=x.device)
        w1, b1, w2, b2, w_out, b_out = self._folded()
        inp = x.float().contiguous()
        if self.hidden_sizes:
            inp = torch.cat([inp, F.linear(hidden.float(), self.proj.weight, self.proj.bias)], dim=-1)
        logit = ops.arbiter_score(inp, w1, b1, w2, b2, w_out=w_out, b_out=b_out, activation=self.activation)
        return torch.sigmoid(logit)

    def _folded(self) -> tuple:
        """The MLP's weights, float32 contiguous, with the feature normalisation folded into
        the first layer (W1 = [W1_x | W1_h] split at the feature count):
            W1 [(x - mean) / std | P hs] + b1 = [W1_x / std | W1_h] [x | P hs] + (b1 - W1_x (mean / std))
        Cached until a parameter or buffer changes (training steps bump their versions;
        .to() replaces them)."""
        key = tuple((t.data_ptr(), t._version) for t in (*self.parameters(), *self.buffers()))
        if getattr(self, "_fold_key", None) == key:
            return self._fold
        l1 = self.layers[0]
        F_ = self.in_features
        w1x = l1.weight[:, :F_] / self.std  # [H1, F]
        w1 = torch.cat([w1x, l1.weight[:, F_:]], dim=1)  # [H1, F (+ proj_dim)]
        b1 = l1.bias - w1x @ self.mean
        w2 = b2 = None
        if len(self.layers) == 2:
            w2, b2 = self.layers[1].weight.float().contiguous(), self.layers[1].bias.float().contiguous()
        self._fold = (w1.float().contiguous(), b1.float().contiguous(), w2, b2,
                      self.out.weight[0].float().contiguous(), self.out.bias.float().contiguous())
        self._fold_key = key
        return self._fold

    def set_normalization(self, features: torch.Tensor) -> None:
        """Sets mean/std from a sample of feature rows [M, F] (std floored at 1e-3)."""
        self.mean.copy_(features.float().mean(0))
        self.std.copy_(features.float().std(0).nan_to_num(1.0).clamp(min=1e-3))

    def config(self) -> dict:
        return {"format": "cospec-arbiter", "version": FORMAT_VERSION, "feature_names": list(self.feature_names),
                "hidden": list(self.hidden), "activation": self.activation,
                "hidden_sizes": list(self.hidden_sizes) if self.hidden_sizes else None, "proj_dim": self.proj_dim,
                "hidden_inputs": list(self.hidden_inputs) if self.hidden_inputs else None}

    def save(self, path: str | os.PathLike) -> str:
        """Writes <dir>/arbiter.json + <dir>/arbiter.safetensors (path: a directory); returns the dir."""
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, os.path.join(path, "arbiter.safetensors"))
        with open(os.path.join(path, "arbiter.json"), "w") as f:
            json.dump(self.config(), f, indent=2)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "Arbiter":
        """Loads a saved arbiter from its directory (or its .json / .safetensors file)."""
        given = path = os.fspath(path)
        if not os.path.isdir(path) and os.path.basename(path) in ("arbiter.json", "arbiter.safetensors"):
            path = os.path.dirname(path) or "."
        cfg_path, w_path = os.path.join(path, "arbiter.json"), os.path.join(path, "arbiter.safetensors")
        if not (os.path.isfile(cfg_path) and os.path.isfile(w_path)):
            raise FileNotFoundError(f"no saved arbiter at {given!r} (expected a directory with arbiter.json and "
                                    "arbiter.safetensors)")
        with open(cfg_path) as f:
            cfg = json.load(f)
        if cfg.get("format") != "cospec-arbiter" or int(cfg.get("version", -1)) > FORMAT_VERSION:
            raise ValueError(f"{cfg_path}: not a cospec arbiter of format version <= {FORMAT_VERSION}: "
                             f"{cfg.get('format')!r} v{cfg.get('version')}")
        arb = cls(cfg["feature_names"], cfg["hidden"], cfg["activation"], hidden_sizes=cfg.get("hidden_sizes"),
                  proj_dim=cfg.get("proj_dim") or 8, hidden_inputs=cfg.get("hidden_inputs"))
        arb.load_state_dict(load_file(w_path))
        val_path = os.path.join(path, "validation.json")
        if os.path.isfile(val_path):
            with open(val_path) as f:
                arb.validation = json.load(f)
            arb.threshold = float(arb.validation.get("threshold", 0.5))
        return arb.to(device).eval()
