"""Dropout whose random masks cost a quarter of the generator's draws: a CPU meta-step's bottleneck under bf16.

On a CPU, torch draws a dropout mask with one call of its single-threaded generator per element, about
16 ns each: the mask over one attention-probability tensor (30 texts x 12 heads x 128 x 128) takes longer
than the matrix products that made it, and once bf16 makes those products fast the masks are about a
third of a meta-step (BENCHMARKS.md, "bf16 on the CPU"). Here one 64-bit draw gives the masks of four
elements, each a 16-bit lane compared with a threshold: an element is kept with probability
``1 - round(p * 65536) / 65536`` (``p`` to within 1/131072), the lanes of a draw are independent, and the
kept values are scaled by the exact inverse of that probability, so the output's expectation is the
input, as with torch's dropout.

:func:`use_packed_dropout` puts it in every dropout layer of a Hugging Face model and in its attention,
through transformers' attention interface under the name :data:`ATTENTION`: the model's SDPA when no
dropout applies (evaluation, eval-mode adaptation, ``attention_dropout: 0``), and softmax(QK^T)V with a
packed mask while it trains. The masks come from torch's default generator, so ``torch.manual_seed``,
checkpointed RNG state and gradient checkpointing's replay reproduce them. The model's config and saved
files are unchanged: a saved model loads and runs without kshot.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ATTENTION = "kshot_packed_dropout"
"""The attention implementation's registered name (transformers' AttentionInterface and mask functions)."""

LANES = 4  # 16-bit lanes in one int64 draw
_LANE_VALUES = 1 << 16


def drop_threshold(p: float) -> tuple[int, float]:
    """(threshold, scale): a lane whose signed 16-bit value is >= threshold is kept; kept values are scaled."""
    dropped = round(p * _LANE_VALUES)
    return -(1 << 15) + dropped, _LANE_VALUES / (_LANE_VALUES - dropped)


def packed_keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A boolean mask of ``shape``, each element True (kept) with probability ``1 - p`` (see the module docstring)."""
    threshold, _ = drop_threshold(p)
    n = math.prod(shape)
    # randint over the whole int64 range makes every lane uniform; random_() would leave each draw's top bit 0.
    words = torch.randint(-(1 << 63), (1 << 63) - 1, ((n + LANES - 1) // LANES,), dtype=torch.int64, device=device)
    return words.view(torch.int16)[:n].view(shape) >= threshold


def packed_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``nn.functional.dropout(x, p, training)`` with a packed mask."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    threshold, scale = drop_threshold(p)
    if threshold == -(1 << 15):  # p below 1/131072 rounds to keeping everything
        return x
    keep = packed_keep_mask(x.shape, p, x.device)
    return x.masked_fill(~keep, 0.0) * scale


class PackedDropout(nn.Dropout):
    """``nn.Dropout`` with packed masks. A subclass, so code that reads or sets ``module.p`` keeps working."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return packed_dropout(x, self.p, self.training)


def packed_dropout_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention for transformers' interface: SDPA when no dropout applies, else softmax(QK^T)V with a packed mask.

    With dropout, torch's SDPA on a CPU runs these same unfused products (its fused CPU kernel has no
    dropout) and draws its mask one element at a time; this does the same work with the packed mask.
    The mask is SDPA's (:func:`register_attention` registers SDPA's mask function under the same name):
    boolean, True where a token may be attended to, or additive, or None.
    """
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if dropout == 0.0:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = packed_dropout(probs, dropout)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return output, None


def register_attention() -> None:
    """Register :func:`packed_dropout_attention` and SDPA's mask format under :data:`ATTENTION`; idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTENTION, packed_dropout_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)


def use_packed_dropout(model: nn.Module) -> dict[str, int | bool]:
    """Give ``model``'s dropout layers, and its SDPA attention, packed masks, in place.

    Returns ``{"layers": dropout layers switched, "attention": whether attention switched}``. Only a model
    on SDPA attention switches its attention (an eager or flash model keeps its own);
    ``save_pretrained`` does not write the attention implementation, so saved files are unchanged.
    """
    layers = 0
    for module in model.modules():
        if type(module) is nn.Dropout:
            module.__class__ = PackedDropout  # the same attributes (p, inplace): switched in place
            layers += 1
    config = getattr(model, "config", None)
    attention = config is not None and getattr(config, "_attn_implementation", None) == "sdpa"
    if attention:
        register_attention()
        model.set_attn_implementation(ATTENTION)
    return {"layers": layers, "attention": attention}
