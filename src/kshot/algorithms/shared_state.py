"""Pieces every in-place algorithm shares (reptile, transfer, finetune, the metric family): meta-parameters
kept beside the one working model, and sums across processes."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class ParameterState:
    """Meta-parameters kept beside the working model, copied into it in place (never deep-copied)."""

    def __init__(self, model: torch.nn.Module, parameters: Sequence[torch.nn.Parameter] | None = None):
        # Frozen parameters (e.g. params.freeze_embeddings) never change: no copies, no deltas.
        self.live = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
        self.meta = [p.detach().clone() for p in self.live]

    @torch.no_grad()
    def reset(self) -> None:
        torch._foreach_copy_([p.data for p in self.live], self.meta)

    @torch.no_grad()
    def capture(self) -> None:
        torch._foreach_copy_(self.meta, [p.data for p in self.live])


def sum_across_processes(accelerator, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Element-wise sum over processes, as one flat collective."""
    if accelerator is None or accelerator.num_processes == 1:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    flat = accelerator.reduce(flat, reduction="sum")
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return out
