"""Prototypical networks (Snell et al., 2017): a class is the mean of its support embeddings, and a
query's logits are minus its squared Euclidean distances to those prototypes (or scaled cosines).

With squared Euclidean distance, −‖e − c_k‖² = 2e·c_k − ‖c_k‖² − ‖e‖², and the last term is the same
for every class: the classifier is a linear head over the embedding (:func:`linear_head`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .metric import SUPPORT_FILE, MetricAlgorithm


def prototypes(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted classes present, their mean embeddings)."""
    classes, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    sums = torch.zeros(len(classes), embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    sums.index_add_(0, inverse, embeddings)
    counts = torch.bincount(inverse, minlength=len(classes)).to(embeddings.dtype)
    return classes, sums / counts.unsqueeze(1)


def prototype_logits(queries: torch.Tensor, protos: torch.Tensor, distance: str, cosine_scale: float) -> torch.Tensor:
    if distance == "cosine":
        return cosine_scale * F.normalize(queries, dim=-1) @ F.normalize(protos, dim=-1).T
    return -torch.cdist(queries, protos).pow(2)


def linear_head(protos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the linear layer whose logits differ from −‖e − c_k‖² by −‖e‖² only, which
    no class depends on: the same softmax and the same argmax."""
    return 2 * protos, -protos.pow(2).sum(dim=1)


class ProtoNet(MetricAlgorithm):
    name = "protonet"

    def support_state(self, embeddings, labels):
        classes, protos = prototypes(embeddings, labels)
        return {"classes": classes, "prototypes": protos}

    def scores(self, support, queries):
        return prototype_logits(queries, support["prototypes"], self.params.distance, self.params.cosine_scale)

    def usage_note(self, adapted: bool) -> str:
        note = super().usage_note(adapted)
        if not adapted or self.params.distance != "euclidean":
            return note
        # The linear-head identity of the module docstring, written out for users without kshot.
        return note + (
            "\n\nWith `transformers` and `safetensors` alone (squared Euclidean distance: a linear head over "
            "the mean-pooled embedding):\n\n```python\nimport torch\n"
            "from safetensors.torch import load_file\n"
            "from transformers import AutoModel, AutoTokenizer\n\n"
            'folder = "PATH_TO_THIS_FOLDER"\n'
            "tok, enc = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()\n"
            f'state = load_file(f"{{folder}}/{SUPPORT_FILE}")  # classes: label ids; prototypes: one row each\n'
            'batch = tok(["a text to classify"], padding=True, truncation=True,'
            f' max_length={self.params.max_length}, return_tensors="pt")\n'
            "with torch.no_grad():\n"
            "    hidden = enc(**batch).last_hidden_state\n"
            '    mask = batch["attention_mask"].unsqueeze(-1).float()\n'
            "    emb = (hidden * mask).sum(1) / mask.sum(1)\n"
            '    c = state["prototypes"]\n'
            "    logits = 2 * emb @ c.T - (c * c).sum(1)  # = -||emb - c||^2 + ||emb||^2\n"
            'label_id = state["classes"][logits.argmax(1)]\n```'
        )
