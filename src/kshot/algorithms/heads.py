"""Heads for new classes: the N-row classifier an episode starts from when its classes are its own.

With tasks drawn from a pool of classes (``TaskCollection.new_classes``), an episode's labels are
0..N-1 in a random order, so a head row that meant one class in one episode means another in the
next. The model then keeps a single meta-learned row ``(w, b)`` (its classifier has one output), and
every episode builds its N-row starting head from it by a rule that treats all classes alike
(``params.new_class_head``):

- ``zero``: W = 0, b = 0 (the row is not used; the inner loop alone shapes the head);
- ``unicorn``: every row is the meta-learned row (Unicorn-MAML, Ye & Chao, ICLR 2022); its
  meta-gradient is the sum of the rows' gradients, so it learns what all classes share;
- ``prototypes``: the meta-learned row plus the prototype head of the support features
  (Proto-MAML, Triantafillou et al., 2020): row c adds 2s·μ_c to w and −s‖μ_c‖² to b, μ_c the mean
  support feature of class c and s = ``params.new_class_head_scale``: the logits of minus s times
  the squared distance to each class mean, up to a term common to every class. With zero inner
  steps this is a nearest-prototype classifier.

Everything here is a function of tensors, differentiable in the row and in the features, so the
meta-gradient reaches the body through the prototypes as well.
"""

from __future__ import annotations

import torch

HEAD_RULES = ("zero", "unicorn", "prototypes")


def class_means(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """[n_classes, F] mean feature of each class (zeros for a class with no example)."""
    one_hot = torch.nn.functional.one_hot(labels, n_classes).to(features.dtype)
    return (one_hot.T @ features) / one_hot.sum(0).clamp(min=1).unsqueeze(1)


def prototypes(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted classes present, their mean embeddings)."""
    classes, inverse = torch.unique(labels, sorted=True, return_inverse=True)
    sums = torch.zeros(len(classes), embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    sums.index_add_(0, inverse, embeddings)
    counts = torch.bincount(inverse, minlength=len(classes)).to(embeddings.dtype)
    return classes, sums / counts.unsqueeze(1)


def linear_head(protos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the linear layer whose logits differ from −‖e − c_k‖² by −‖e‖² only, which
    no class depends on: the same softmax and the same argmax."""
    return 2 * protos, -protos.pow(2).sum(dim=1)


def prototype_head(means: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) whose logits are −scale·‖x − μ_c‖² + scale·‖x‖² (the last term is common to all classes)."""
    return 2 * scale * means, -scale * means.pow(2).sum(1)


def episode_head(
    rule: str,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    n_classes: int,
    features: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The N-row starting head of an episode from the meta-learned one-row head ``(weight [1, F], bias [1])``.

    ``features``/``labels`` (the support set's head inputs and episode labels) are needed by 'prototypes'.
    """
    if weight.shape[0] != 1:
        raise ValueError(f"a new-class head starts from one meta-learned row, got {weight.shape[0]}")
    w = weight.expand(n_classes, -1)
    b = bias.expand(n_classes) if bias is not None else None
    if rule == "zero":
        # Multiplied, not new zeros: the row stays in the graph (a zero meta-gradient, never a missing one).
        return w * 0, None if b is None else b * 0
    if rule == "unicorn":
        return w, b
    if rule != "prototypes":
        raise ValueError(f"unknown head rule {rule!r}; choose one of {', '.join(HEAD_RULES)}")
    if features is None or labels is None:
        raise ValueError("the 'prototypes' head needs the support features and labels")
    pw, pb = prototype_head(class_means(features, labels, n_classes).to(weight.dtype), scale)
    return w + pw, None if b is None else b + pb.to(b.dtype)
