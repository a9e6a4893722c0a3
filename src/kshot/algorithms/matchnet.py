"""Matching networks (Vinyals et al., 2016), without full-context embeddings: a query attends to every
support example with softmax(cosine_scale · cosine similarity), and its class distribution is the
attention mass on each class's examples.

Logits are the log of that distribution, computed as log-sum-exps (exact, and never log 0):
log P(k | q) = logsumexp_{i: y_i = k} s_i − logsumexp_i s_i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .metric import MetricAlgorithm


def attention_log_probs(
    queries: torch.Tensor, support: torch.Tensor, labels: torch.Tensor, classes: torch.Tensor, scale: float
) -> torch.Tensor:
    """log P(class | query) [queries, classes] under cosine attention over ``support``."""
    sims = scale * F.normalize(queries, dim=-1) @ F.normalize(support, dim=-1).T
    member = labels.unsqueeze(0) == classes.unsqueeze(1)  # [classes, support]
    masked = sims.unsqueeze(1).masked_fill(~member.unsqueeze(0), float("-inf"))  # [queries, classes, support]
    return torch.logsumexp(masked, dim=-1) - torch.logsumexp(sims, dim=-1, keepdim=True)


class MatchingNet(MetricAlgorithm):
    name = "matchnet"

    def support_state(self, embeddings, labels):
        return {"classes": torch.unique(labels, sorted=True), "embeddings": embeddings, "labels": labels}

    def scores(self, support, queries):
        return attention_log_probs(
            queries, support["embeddings"], support["labels"], support["classes"], self.params.cosine_scale
        )
