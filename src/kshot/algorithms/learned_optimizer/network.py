"""The coordinate-wise learned optimizer: one small network shared by every parameter coordinate.

For each coordinate it sees the gradient, the parameter's value and Adam-style running moments,
preprocessed to bounded features (log-magnitude and sign, Andrychowicz et al. 2016), and outputs
that coordinate's update::

    raw  = c_sgd·g + c_adam·m̂/(√v̂+ε) + net(features)
    Δ    = exp(log_lr + log_scale[tensor]) · raw
    θ'   = θ − max_step·tanh(Δ / max_step)          (θ − Δ when max_step is None)

The two linear "skip" terms let the rule start as exactly SGD or Adam (``net``'s output layer starts
at zero) and learn corrections from there. Because the same network serves every coordinate, its size
does not depend on the model's, so a rule learned on one model applies to another of the same family;
the optional per-tensor scales are keyed by parameter name, and names the rule has not seen get scale 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...errors import ConfigError

N_FEATURES = 8
_LOG_CLIP = 10.0  # Andrychowicz et al.'s p: magnitudes below e^-p are encoded linearly
_TINY = 1e-30  # keeps d√v/dv finite where v is exactly 0 (second-order meta-gradients)


@dataclass
class LoptConfig:
    """The learned optimizer's architecture and starting rule (saved as ``learned_optimizer.json``)."""

    kind: Literal["mlp", "lstm"] = "mlp"
    hidden: int = 16
    max_step: float | None = 0.01
    init_rule: Literal["sgd", "adam"] = "sgd"
    init_lr: float = 1e-3
    per_tensor_scales: bool = True
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.kind not in ("mlp", "lstm"):
            raise ConfigError(f"Unknown learned optimizer kind '{self.kind}'. Choose from: mlp, lstm.")
        if self.init_rule not in ("sgd", "adam"):
            raise ConfigError(f"Unknown learned optimizer starting rule '{self.init_rule}'. Choose from: sgd, adam.")
        if self.hidden < 1:
            raise ConfigError(f"The learned optimizer's hidden size must be at least 1, got {self.hidden}.")
        if self.max_step is not None and not self.max_step > 0:
            raise ConfigError(
                f"The learned optimizer's max_step must be positive or null (unbounded), got {self.max_step}."
            )
        if not self.init_lr > 0:
            raise ConfigError(f"The learned optimizer's starting learning rate must be positive, got {self.init_lr}.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LoptConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"Unknown learned optimizer setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
            )
        return cls(**data)


def log_sign(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log|x|/p, sign x) for |x| ≥ e^-p, else (−1, e^p·x): bounded, scale-free features."""
    big = x.abs() >= math.exp(-_LOG_CLIP)
    magnitude = torch.where(
        big, torch.log(x.abs().clamp_min(math.exp(-_LOG_CLIP))) / _LOG_CLIP, torch.full_like(x, -1.0)
    )
    sign = torch.where(big, torch.sign(x), x * math.exp(_LOG_CLIP))
    return magnitude, sign


class LearnedOptimizer(nn.Module):
    """Maps (parameter, gradient, per-coordinate state) to the updated parameter and state.

    Per-coordinate state ("slots") of one tensor: ``(m, v)`` for the MLP, ``(m, v, h, c)`` for the
    LSTM, whose hidden state has one row per coordinate.
    """

    def __init__(self, config: LoptConfig, tensor_names: list[str] | None = None):
        super().__init__()
        self.config = config
        h = config.hidden
        if config.kind == "mlp":
            self.body = nn.Sequential(nn.Linear(N_FEATURES, h), nn.SiLU(), nn.Linear(h, h), nn.SiLU())
        else:
            self.body = nn.LSTMCell(N_FEATURES, h)
        self.out = nn.Linear(h, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        sgd = config.init_rule == "sgd"
        self.c_sgd = nn.Parameter(torch.tensor(1.0 if sgd else 0.0))
        self.c_adam = nn.Parameter(torch.tensor(0.0 if sgd else 1.0))
        self.log_lr = nn.Parameter(torch.tensor(math.log(config.init_lr)))
        self.scale_names: list[str] = []
        self.log_scale = nn.Parameter(torch.zeros(0))
        if config.per_tensor_scales and tensor_names:
            self.add_tensor_names(tensor_names)

    # ------------------------------------------------------------------ per-tensor scales
    def add_tensor_names(self, names: list[str]) -> None:
        """Give every new name a learnable scale (starting at 1). Call before building an optimizer."""
        new = [n for n in names if n not in self.scale_names]
        if not new or not self.config.per_tensor_scales:
            return
        self.scale_names = self.scale_names + new
        old = self.log_scale.detach()
        self.log_scale = nn.Parameter(torch.cat([old, old.new_zeros(len(new))]))
        self._index = None

    def _log_scale(self, name: str) -> torch.Tensor | float:
        if getattr(self, "_index", None) is None:
            self._index = {n: i for i, n in enumerate(self.scale_names)}
        i = self._index.get(name)
        return 0.0 if i is None else self.log_scale[i]

    # ------------------------------------------------------------------ the update rule
    def init_slots(self, weights: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, ...]]:
        slots = {}
        for name, p in weights.items():
            moments = (torch.zeros_like(p), torch.zeros_like(p))
            if self.config.kind == "lstm":
                hidden = p.new_zeros(p.numel(), self.config.hidden)
                moments += (hidden, hidden.clone())
            slots[name] = moments
        return slots

    def _direction(
        self, feats: torch.Tensor, hc: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if self.config.kind == "mlp":
            return self.out(self.body(feats)).squeeze(-1), ()
        h, c = self.body(feats, hc)
        return self.out(h).squeeze(-1), (h, c)

    def _learned(self, grad, m_hat, denom, adam_dir, value, *hc):
        feats = torch.stack([*log_sign(grad), *log_sign(m_hat), grad / denom, adam_dir, *log_sign(value)], dim=-1)
        learned, hc = self._direction(feats.reshape(-1, N_FEATURES), tuple(hc))
        return (learned, *hc)

    def update(
        self,
        name: str,
        theta: torch.Tensor,
        grad: torch.Tensor,
        slots: tuple[torch.Tensor, ...],
        t: int,
        detach_inputs: bool = False,
        recompute: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step for one tensor; ``t`` counts steps from 1. ``detach_inputs``: first-order
        meta-gradients (the features are constants; gradients reach the network's weights only).
        ``recompute``: checkpoint the network (recompute its activations in the backward pass)."""
        cfg = self.config
        m, v, *hc = slots
        if detach_inputs:
            grad = grad.detach()
        m = cfg.beta1 * m + (1 - cfg.beta1) * grad
        v = cfg.beta2 * v + (1 - cfg.beta2) * grad * grad
        m_hat = m / (1 - cfg.beta1**t)
        v_hat = v / (1 - cfg.beta2**t)
        denom = torch.sqrt(v_hat + _TINY) + cfg.eps
        adam_dir = m_hat / denom
        value = theta.detach() if detach_inputs else theta
        if recompute and torch.is_grad_enabled():
            # Keep only the inputs; the features and hidden activations (~100 floats per coordinate)
            # are recomputed in the backward pass.
            learned, *hc = checkpoint(self._learned, grad, m_hat, denom, adam_dir, value, *hc, use_reentrant=False)
        else:
            learned, *hc = self._learned(grad, m_hat, denom, adam_dir, value, *hc)
        raw = self.c_sgd * grad + self.c_adam * adam_dir + learned.view_as(theta)
        step = torch.exp(self.log_lr + self._log_scale(name)) * raw
        if cfg.max_step is not None:
            step = cfg.max_step * torch.tanh(step / cfg.max_step)
        return theta - step, (m, v, *hc)

    def step(
        self,
        weights: dict[str, torch.Tensor],
        grads: dict[str, torch.Tensor],
        slots: dict[str, tuple],
        t: int,
        detach_inputs: bool = False,
        recompute: bool = False,
    ) -> tuple[dict[str, torch.Tensor], dict[str, tuple]]:
        new_weights, new_slots = {}, {}
        for name, theta in weights.items():
            new_weights[name], new_slots[name] = self.update(
                name, theta, grads[name], slots[name], t, detach_inputs, recompute
            )
        return new_weights, new_slots

    # ------------------------------------------------------------------ set-ups used by tests and users
    @torch.no_grad()
    def set_rule(self, sgd: float, adam: float, lr: float) -> None:
        """Make the rule exactly ``lr·(sgd·g + adam·m̂/(√v̂+ε))``: the network's output and the
        per-tensor scales are zeroed."""
        self.c_sgd.fill_(sgd)
        self.c_adam.fill_(adam)
        self.log_lr.fill_(math.log(lr))
        self.out.weight.zero_()
        self.out.bias.zero_()
        self.log_scale.zero_()
