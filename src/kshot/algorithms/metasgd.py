"""Meta-SGD (Li et al., 2017): MAML with a learned inner learning rate for every weight.

The rates α start at ``params.metasgd_init_lr`` (default ``inner_lr``), scale the inner update
(θ′ = θ − α ⊙ u(g), u the ``inner_optimizer``'s direction) and are meta-trained with θ by the same
outer Adam, at their own rate ``params.metasgd_lr_lr``. They are saved beside the model as
``metasgd_lrs.safetensors`` (same names as the model's parameters), and ``load_pretrained`` reads
them back, so ``kshot evaluate`` and ``kshot adapt`` adapt with the learned rates.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from .functional import ParamDict, trainable_names
from .gradient import GradientMetaLearner

logger = logging.getLogger(__name__)

LR_FILE = "metasgd_lrs.safetensors"


class MetaSGD(GradientMetaLearner):
    name = "metasgd"

    def __init__(self, model, params, accelerator, pad_token_id):
        self.init_lr = params.metasgd_init_lr if params.metasgd_init_lr is not None else params.inner_lr
        named = dict(model.named_parameters())
        self.lrs: ParamDict = {
            n: torch.full_like(named[n], self.init_lr, requires_grad=True) for n in trainable_names(model)
        }
        super().__init__(model, params, accelerator, pad_token_id)

    def inner_lr(self) -> ParamDict:
        return self.lrs

    def outer_groups(self) -> list[dict[str, Any]]:
        lr_lr = self.params.metasgd_lr_lr if self.params.metasgd_lr_lr is not None else self.init_lr / 100
        return super().outer_groups() + [{"params": list(self.lrs.values()), "lr": lr_lr}]

    def extra_state(self) -> dict[str, Any]:
        return {"lrs": {n: t.detach().cpu().clone() for n, t in self.lrs.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "lrs" in state:
            self._set_lrs(state["lrs"], source="the checkpoint")

    def _set_lrs(self, values: dict[str, torch.Tensor], source: str) -> None:
        fresh = []
        with torch.no_grad():
            for n, lr in self.lrs.items():
                value = values.get(n)
                if value is None or value.shape != lr.shape:
                    # A new classifier head (other labels) has no learned rates: it starts at init_lr.
                    lr.fill_(self.init_lr)
                    fresh.append(n)
                else:
                    lr.copy_(value.to(lr.device, lr.dtype))
        if fresh:
            logger.warning("No learned rates in %s for %s: they start at %g.", source, ", ".join(fresh), self.init_lr)

    def extra_files(self) -> dict[str, Any]:
        from safetensors.torch import save_file

        lrs = {n: t.detach().cpu().contiguous() for n, t in self.lrs.items()}
        return {LR_FILE: lambda path: save_file(lrs, str(path))}

    def load_pretrained(self, model_dir: str) -> None:
        super().load_pretrained(model_dir)
        path = Path(model_dir) / LR_FILE
        if not path.is_file():
            raise ModelError(
                f"{path} is missing: a metasgd model adapts with the inner learning rates it learned, saved "
                "beside it by `kshot train`. Use a folder saved by kshot with algorithm metasgd, or adapt this "
                "model with another algorithm (--set params.algorithm=maml)."
            )
        from safetensors.torch import load_file

        self._set_lrs(load_file(str(path)), source=str(path))

    def learned_lr_summary(self) -> dict[str, float]:
        """Mean learned rate over all weights (logged by tests and benchmarks)."""
        flat = torch.cat([t.detach().reshape(-1) for t in self.lrs.values()])
        return {"mean": float(flat.mean()), "min": float(flat.min()), "max": float(flat.max())}
