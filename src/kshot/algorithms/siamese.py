"""Siamese networks (Koch et al., 2015) on sentence embeddings: a symmetric pair scorer, trained on
same-class / different-class pairs, and classification by the nearest support examples.

Training pairs are every (query, support) pair of an episode, labelled 1 when the two share a class;
the binary cross-entropy weighs the two kinds equally (in an N-way episode only 1/N of the pairs are
positive). A class's logit is the mean pair score of its ``siamese_neighbors`` best-scoring support
examples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .metric import MetricAlgorithm


def pair_targets(query_labels: torch.Tensor, support_labels: torch.Tensor) -> torch.Tensor:
    """[queries, support] float matrix: 1 where the pair shares a class, 0 otherwise."""
    return (query_labels.unsqueeze(1) == support_labels.unsqueeze(0)).float()


class PairScorer(nn.Module):
    """Same-class logit of every (query, support) pair, symmetric in its two inputs."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, queries: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        a, b = torch.broadcast_tensors(queries.unsqueeze(1), support.unsqueeze(0))
        return self.net(torch.cat([(a - b).abs(), a * b], dim=-1)).squeeze(-1)


def neighbour_scores(
    pair_logits: torch.Tensor, support_labels: torch.Tensor, classes: torch.Tensor, k: int
) -> torch.Tensor:
    """[queries, classes]: mean of each class's top-k pair logits (all of them if it has fewer)."""
    out = []
    for c in classes:
        col = pair_logits[:, support_labels == c]
        out.append(col.topk(min(k, col.shape[1]), dim=1).values.mean(dim=1))
    return torch.stack(out, dim=1)


class Siamese(MetricAlgorithm):
    name = "siamese"

    def build_scorer(self, dim):
        return PairScorer(dim, self.params.scorer_hidden)

    def support_state(self, embeddings, labels):
        return {"classes": torch.unique(labels, sorted=True), "embeddings": embeddings, "labels": labels}

    def scores(self, support, queries):
        logits = self.scorer(queries, support["embeddings"])
        return neighbour_scores(logits, support["labels"], support["classes"], self.params.siamese_neighbors)

    def episode_loss(self, s_emb, s_lab, q_emb, q_lab):
        logits = self.scorer(q_emb, s_emb)
        targets = pair_targets(q_lab, s_lab)
        positives = targets.sum()
        # Each kind of pair carries half the loss, whatever the ratio of positives to negatives.
        weights = torch.where(
            targets > 0, 0.5 / positives.clamp_min(1), 0.5 / (targets.numel() - positives).clamp_min(1)
        )
        loss = F.binary_cross_entropy_with_logits(logits, targets, weight=weights, reduction="sum")
        classes = torch.unique(s_lab, sorted=True)
        pred = classes[neighbour_scores(logits.detach(), s_lab, classes, self.params.siamese_neighbors).argmax(dim=1)]
        return loss, (pred == q_lab).float().mean()
