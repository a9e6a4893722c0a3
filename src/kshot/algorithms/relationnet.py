"""Relation networks (Sung et al., 2018) on sentence embeddings: a small learned relation module scores
each query against each class prototype (the mean support embedding).

Two choices differ from the image paper: the module reads [q; c; |q − c|; q ⊙ c] (the usual pair
features for sentence embeddings, where the paper concatenates feature maps), and it is trained with
cross-entropy over the relation scores rather than MSE on sigmoids, so its outputs are logits like
every other algorithm's. The module is saved beside the model (``extra_files``) and read back by
``load_pretrained``.
"""

from __future__ import annotations

import torch
from torch import nn

from .metric import MetricAlgorithm
from .protonet import prototypes


def pair_features(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[..., 4·dim] features of every (a_i, b_j) pair: a [n, dim], b [m, dim] → [n, m, 4·dim]."""
    a, b = torch.broadcast_tensors(a.unsqueeze(1), b.unsqueeze(0))
    return torch.cat([a, b, (a - b).abs(), a * b], dim=-1)


class RelationModule(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, queries: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
        """Relation scores [queries, prototypes]."""
        return self.net(pair_features(queries, protos)).squeeze(-1)


class RelationNet(MetricAlgorithm):
    name = "relationnet"

    def build_scorer(self, dim):
        return RelationModule(dim, self.params.scorer_hidden)

    def support_state(self, embeddings, labels):
        classes, protos = prototypes(embeddings, labels)
        return {"classes": classes, "prototypes": protos}

    def scores(self, support, queries):
        return self.scorer(queries, support["prototypes"])
