"""Mean pooling built from BERT's own layers, so the head reads the sentence embedding and the saved folder
stays a plain ``BertForSequenceClassification``.

Sentence encoders such as all-MiniLM-L6-v2 were trained for the masked mean of the last hidden states, not
for BERT's CLS pooler, and kshot's prototypes and heads work on that mean. A custom forward would need
custom code to serve; instead :func:`to_mean_pooling` computes the mean with standard modules, so
``pipeline("text-classification", model=folder)`` gives exactly what kshot predicts:

* One ``BertLayer`` is appended to the encoder (the *pooling layer*). Query and key are zero, so every
  attention score is 0 plus the padding mask: attention is uniform over each sequence's real tokens, and
  with value = I every position (CLS included) receives their mean m. The attention output dense is λ·I,
  so its LayerNorm (weight 1, bias 0) sees λ·m + h and returns LN(m + h/λ) ≈ LN(m) = s: no weight can
  remove the token's own residual h, it leaks in at 1/λ. The FFN is zero (gelu(0) = 0), so its LayerNorm
  passes s through unchanged.
* BertPooler (CLS token, dense, tanh: fixed in its forward) gets dense = I/√H. s has zero mean and unit
  variance over the H dimensions, so ‖s‖ = √H and the pooler output tanh(s/√H) is the L2-normalised
  mean embedding, soft-clipped by tanh (norm a little under 1).

The pooling layer and the pooler are a fixed function, not weights to learn: :func:`to_mean_pooling`
freezes them, and :func:`freeze_pooling` does it again after ``from_pretrained`` (requires_grad is not
saved). ``config.kshot_pooling = "mean"`` marks a converted model and travels in config.json.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..errors import ModelError

POOLING_KEY = "kshot_pooling"
MEAN = "mean"
# The residual leaks into the mean at 1/λ. Larger would leak less, but λ·m must stay finite in float16
# (max 65504) for hidden states with outlier dimensions of a few tens.
LAMBDA = 1000.0

# How each parameter of the pooling layer is set: every parameter of a BertLayer is listed, and a layer with
# any other parameter (cross-attention, a variant's extra weights) is refused rather than left random.
_LAYER_FILL = {
    "attention.self.query.weight": "zero",
    "attention.self.query.bias": "zero",
    "attention.self.key.weight": "zero",
    "attention.self.key.bias": "zero",
    "attention.self.value.weight": "eye",
    "attention.self.value.bias": "zero",
    "attention.output.dense.weight": "lambda_eye",
    "attention.output.dense.bias": "zero",
    "attention.output.LayerNorm.weight": "one",
    "attention.output.LayerNorm.bias": "zero",
    "intermediate.dense.weight": "zero",
    "intermediate.dense.bias": "zero",
    "output.dense.weight": "zero",
    "output.dense.bias": "zero",
    "output.LayerNorm.weight": "one",
    "output.LayerNorm.bias": "zero",
}
_POOLER_FILL = {"dense.weight": "epsilon_eye", "dense.bias": "zero"}

_SUPPORTED = (
    "Mean pooling supports BERT sequence classifiers (BertForSequenceClassification, e.g. all-MiniLM-L6-v2 or "
    "bert-base checkpoints loaded with AutoModelForSequenceClassification): a model with .bert.encoder.layer, "
    ".bert.pooler and a Linear .classifier."
)


def is_mean_pooled(model: nn.Module) -> bool:
    return getattr(getattr(model, "config", None), POOLING_KEY, None) == MEAN


def pooling_modules(model: nn.Module) -> tuple[str, ...]:
    """Names (as in ``named_modules``) of the pooling layer and the pooler; empty for an unconverted model.

    They belong to neither body nor head: frozen, and their dropout must stay 0.
    """
    if not is_mean_pooled(model):
        return ()
    return (f"bert.encoder.layer.{len(model.bert.encoder.layer) - 1}", "bert.pooler")


def to_mean_pooling(model: nn.Module) -> nn.Module:
    """Convert a BERT sequence classifier in place so its classifier reads the mean embedding; returns it.

    A model already converted is returned unchanged.
    """
    if is_mean_pooled(model):
        return model
    _check_bert(model)
    config, layers, pooler = model.config, model.bert.encoder.layer, model.bert.pooler
    hidden = config.hidden_size
    if config.is_decoder:
        raise ModelError(f"{type(model).__name__} is a decoder (causal attention): its mean cannot be pooled.")

    # A copy keeps the layer's class, dtype and device; every parameter is then overwritten.
    layer = copy.deepcopy(layers[-1])
    _fill(layer, _LAYER_FILL, hidden, type(model).__name__)
    for module in layer.modules():
        if hasattr(module, "layer_idx"):  # as from_pretrained will number it
            module.layer_idx = len(layers)
    _fill(pooler, _POOLER_FILL, hidden, type(model).__name__)
    layers.append(layer)

    # BertModel and its encoder usually share the model's config; update each distinct object once.
    configs = {id(c): c for c in (config, model.bert.config, getattr(model.bert.encoder, "config", config))}
    for c in configs.values():
        c.num_hidden_layers = len(layers)
        setattr(c, POOLING_KEY, MEAN)
    freeze_pooling(model)
    return model


def freeze_pooling(model: nn.Module) -> None:
    """Freeze the pooling layer and the pooler and set the pooling layer's dropout to 0 (no-op if unconverted).

    Call after ``from_pretrained`` of a converted model. Dropout there would make the fixed function random
    in training: attention dropout drops tokens from the mean.
    """
    for name in pooling_modules(model):
        module = model.get_submodule(name)
        for p in module.parameters():
            p.requires_grad_(False)
        for m in module.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0


def set_classifier(model: nn.Module, weight: torch.Tensor, bias: torch.Tensor, label_names: list[str]) -> None:
    """Replace ``model.classifier`` by a Linear holding ``weight`` [N, F] and ``bias`` [N] for ``label_names``.

    The config's label maps follow, so a saved folder's pipeline answers with these names. The new layer
    takes the old one's device and dtype (float32 for a float32 model; a float32 head on a bfloat16 body
    would fail outside autocast).
    """
    old = getattr(model, "classifier", None)
    if not isinstance(old, nn.Linear):
        raise ModelError(f"{type(model).__name__} has no Linear .classifier to replace. {_SUPPORTED}")
    weight, bias = torch.as_tensor(weight).detach(), torch.as_tensor(bias).detach()
    names = [str(n) for n in label_names]
    if weight.ndim != 2 or weight.shape[1] != old.in_features:
        raise ModelError(
            f"The classifier weight must be [labels, {old.in_features}] for {type(model).__name__}, "
            f"not {list(weight.shape)}."
        )
    n = weight.shape[0]
    if bias.shape != (n,) or len(names) != n:
        raise ModelError(
            f"The classifier has {n} rows but its bias has shape {list(bias.shape)} and {len(names)} label "
            "names were given; they must agree."
        )
    if len(set(names)) != n:
        raise ModelError(f"Label names must be distinct: {names}.")
    new = nn.Linear(old.in_features, n, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
    model.classifier = new
    model.config.id2label = dict(enumerate(names))  # num_labels is len(id2label) in transformers 5
    model.config.label2id = {name: i for i, name in enumerate(names)}
    # A forward with labels on a 1-label head sets "regression", which would stop the pipeline's softmax.
    model.config.problem_type = None
    if hasattr(model, "num_labels"):  # BertForSequenceClassification's loss reads its own copy
        model.num_labels = n


def head_features(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **inputs
) -> torch.Tensor:
    """What ``model.classifier`` receives for these inputs in eval mode, [batch, features].

    Gradients flow (wrap in ``torch.no_grad()`` when not needed); every module's train/eval mode is
    restored afterwards.
    """
    captured: list[torch.Tensor] = []
    handle = model.classifier.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, **inputs)
    finally:
        handle.remove()
        for m, training in modes:
            m.training = training
    return captured[0]


def _check_bert(model: nn.Module) -> None:
    bert = getattr(model, "bert", None)
    layers = getattr(getattr(bert, "encoder", None), "layer", None)
    ok = (
        isinstance(layers, nn.ModuleList)
        and len(layers) > 0
        and isinstance(getattr(bert, "pooler", None), nn.Module)
        and isinstance(getattr(model, "classifier", None), nn.Linear)
        and hasattr(model, "config")
    )
    if not ok:
        raise ModelError(f"{type(model).__name__} cannot be converted to mean pooling. {_SUPPORTED}")


def _fill(module: nn.Module, fill: dict[str, str], hidden: int, model_name: str) -> None:
    weights = dict(module.named_parameters())
    odd = sorted(set(weights) ^ set(fill))
    odd += [
        f"{n} {list(p.shape)}"
        for n, p in weights.items()
        if fill.get(n, "").endswith("eye") and p.shape != (hidden, hidden)
    ]
    if odd:  # checked before any change, so a refused model is left as it was
        raise ModelError(
            f"{model_name} has a {type(module).__name__} unlike BERT's ({', '.join(odd)}); "
            f"it cannot be converted to mean pooling. {_SUPPORTED}"
        )
    values = {"zero": 0.0, "one": 1.0, "eye": 1.0, "lambda_eye": LAMBDA, "epsilon_eye": 1 / math.sqrt(hidden)}
    with torch.no_grad():
        for name, p in weights.items():
            kind = fill[name]
            if kind.endswith("eye"):
                p.copy_(torch.eye(hidden) * values[kind])
            else:
                p.fill_(values[kind])
            p.grad = None
