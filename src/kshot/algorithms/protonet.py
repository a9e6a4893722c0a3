"""Prototypical networks (Snell et al., 2017): a class is the mean of its support embeddings, and a
query's logits are minus its squared Euclidean distances to those prototypes (or scaled cosines).

With squared Euclidean distance, −‖e − c_k‖² = 2e·c_k − ‖c_k‖² − ‖e‖², and the last term is the same
for every class: the classifier is a linear head over the embedding (:func:`linear_head`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.pooling import is_mean_pooled
from .heads import prototypes
from .metric import SUPPORT_FILE, MetricAlgorithm


def prototype_logits(queries: torch.Tensor, protos: torch.Tensor, distance: str, cosine_scale: float) -> torch.Tensor:
    if distance == "cosine":
        return cosine_scale * F.normalize(queries, dim=-1) @ F.normalize(protos, dim=-1).T
    return -torch.cdist(queries, protos).pow(2)


class ProtoNet(MetricAlgorithm):
    name = "protonet"

    def support_state(self, embeddings, labels):
        classes, protos = prototypes(embeddings, labels)
        return {"classes": classes, "prototypes": protos}

    def scores(self, support, queries):
        return prototype_logits(queries, support["prototypes"], self.params.distance, self.params.cosine_scale)

    def usage_note(self, adapted: bool) -> str:
        note = super().usage_note(adapted)
        if not adapted or self.params.distance != "euclidean" or is_mean_pooled(self.model):
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
