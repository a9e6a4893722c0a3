"""A task's own classifier for the in-place algorithms (reptile, transfer, finetune) on new classes.

The model's classifier is one meta-learned row (see heads.py). For a task, :meth:`TaskHead.install`
puts an N-row Linear in its place, started by ``params.new_class_head`` (the prototypes of the
support set's head inputs, computed once without dropout); the task trains it in place with the
body; :meth:`remove` puts the meta-learned row back. Reptile moves the row by the mean over rows of
how far the task moved them (:meth:`add_row_delta`), the Reptile analogue of Unicorn-MAML's summed
row gradient.
"""

from __future__ import annotations

import copy

import torch

from ..data import TaskExamples, length_sorted_batches
from .base import NEW_CLASSES_KEY, autocast, to_device
from .functional import head_names
from .heads import episode_head


class TaskHead:
    def __init__(self, model: torch.nn.Module, params, pad_token_id: int, device, accelerator=None):
        self.model, self.params, self.pad, self.device, self.accelerator = (
            model,
            params,
            pad_token_id,
            device,
            accelerator,
        )
        names = {n.split(".")[0] for n in head_names(model)}
        self.module_name = names.pop() if len(names) == 1 else None
        self.meta_head = model.get_submodule(self.module_name) if self.module_name else None
        if not isinstance(self.meta_head, torch.nn.Linear) or self.meta_head.out_features != 1:
            raise ValueError(f"new classes need a one-row Linear head; {type(model).__name__} has {sorted(names)}")
        self.start: tuple[torch.Tensor, torch.Tensor | None] | None = None

    @property
    def installed(self) -> bool:
        return self.model.get_submodule(self.module_name) is not self.meta_head

    @torch.no_grad()
    def features(self, support: TaskExamples) -> torch.Tensor:
        """The head inputs of the support set, in eval mode (no dropout): what the prototypes average."""
        captured: list[torch.Tensor] = []
        hook = self.meta_head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        was_training = self.model.training
        self.model.eval()
        out = torch.empty(len(support), self.meta_head.in_features, device=self.device)
        try:
            for idx, batch in length_sorted_batches(support, self.params.eval_batch_size, self.pad):
                batch.pop("labels")
                with autocast(self.accelerator):
                    self.model(**to_device(batch, self.device))
                out[torch.as_tensor(idx, device=self.device)] = captured.pop().float()
        finally:
            hook.remove()
            self.model.train(was_training)
        return out

    def install(self, support: TaskExamples) -> None:
        """Put the task's N-row head in place of the meta-learned row."""
        self.remove()
        p = self.params
        n = int(support.labels.max()) + 1
        labels = torch.as_tensor(support.labels, device=self.device)
        features = self.features(support) if p.new_class_head == "prototypes" else None
        row = self.meta_head
        with torch.no_grad():
            weight, bias = episode_head(
                p.new_class_head, row.weight, row.bias, n, features, labels, p.new_class_head_scale
            )
        head = torch.nn.Linear(
            row.in_features, n, bias=bias is not None, device=row.weight.device, dtype=row.weight.dtype
        )
        with torch.no_grad():
            head.weight.copy_(weight)
            if bias is not None:
                head.bias.copy_(bias)
        self.start = (weight.detach().clone(), None if bias is None else bias.detach().clone())
        self.model.set_submodule(self.module_name, head)

    def remove(self) -> None:
        if self.module_name is not None and self.installed:
            self.model.set_submodule(self.module_name, self.meta_head)

    @torch.no_grad()
    def add_row_delta(self, delta: list[torch.Tensor], live: list[torch.Tensor]) -> None:
        """Add the installed head's mean row movement to ``delta`` at the meta-learned row's entries."""
        if self.params.new_class_head == "zero" or self.start is None:
            return
        head = self.model.get_submodule(self.module_name)
        moved = {id(self.meta_head.weight): (head.weight - self.start[0]).mean(0, keepdim=True)}
        if self.meta_head.bias is not None and self.start[1] is not None:
            moved[id(self.meta_head.bias)] = (head.bias - self.start[1]).mean(0, keepdim=True)
        for i, tensor in enumerate(live):
            if id(tensor) in moved:
                delta[i].add_(moved[id(tensor)].view_as(delta[i]))

    def exported(self, label_names: list[str] | None) -> torch.nn.Module:
        """A copy of the model with the installed head, labelled with the task's class names."""
        from ..models.pooling import set_classifier

        head = self.model.get_submodule(self.module_name)
        model = copy.deepcopy(self.model)
        names = label_names or [f"LABEL_{i}" for i in range(head.out_features)]
        set_classifier(model, head.weight.detach(), head.bias.detach(), list(names))
        setattr(model.config, NEW_CLASSES_KEY, False)
        return model
