"""The learned optimizer: a coordinate-wise network that is the inner loop's update rule, meta-learned
with the initialisation."""

from .algorithm import LearnedOptimizerAlgorithm
from .network import LearnedOptimizer, LoptConfig
from .persistence import load_lopt, lopt_files
from .unroll import (
    MetaGradients,
    UnrollOptions,
    adapt_weights,
    meta_gradients,
    model_loss_fn,
)

__all__ = [
    "LearnedOptimizer",
    "LearnedOptimizerAlgorithm",
    "LoptConfig",
    "MetaGradients",
    "UnrollOptions",
    "adapt_weights",
    "load_lopt",
    "lopt_files",
    "meta_gradients",
    "model_loss_fn",
]
