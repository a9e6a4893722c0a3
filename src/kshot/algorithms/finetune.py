"""The fine-tuning baseline: no meta-training; every task adapts the pretrained model directly.

It runs through the same trainer, evaluation and saved-model format as the meta-learners, so a
comparison uses identical tasks and adaptation. ``meta_step`` changes nothing (returns no
metrics), so run it with ``meta_steps: 1``: the trainer then validates, saves the pretrained
weights (and the seeded fresh classifier head) as the "best model", and tests it. Adaptation is
reptile's inner loop: ``eval_inner_steps`` steps of ``inner_optimizer`` at ``inner_lr`` on the
support set, from the pretrained weights each time.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..data import Episode
from .reptile import Reptile


class Finetune(Reptile):
    name = "finetune"

    def meta_step(
        self, episodes: Sequence[Episode], step: int, total_tasks: int, lr_scale: float = 1.0
    ) -> dict[str, float]:
        return {}
