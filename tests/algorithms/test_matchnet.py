import numpy as np
import torch

from kshot.config import Params
from kshot.models import load_model, load_tokenizer
from kshot.training.setup import build_algorithm

from .metric_helpers import (
    build,
    few_shot_accuracy,
    manual_embeddings,
    meta_train,
    tokenized,
)

SUPPORT = ["good great love", "nice item", "bad poor it", "awful worst the product was", "hate"]
SUPPORT_LABELS = [2, 2, 0, 0, 0]
QUERY = ["great product", "broken waste sad", "the item is very perfect and good"]


def test_logits_are_the_log_of_the_cosine_attention_mass_per_class(tiny_model_dir):
    model = load_model(str(tiny_model_dir), ["a", "b", "c"])
    algo = build_algorithm(
        model,
        Params.from_dict({"algorithm": "matchnet", "cosine_scale": 5.0}),
        None,
        load_tokenizer(str(tiny_model_dir)),
    )
    algo.adapt(tokenized(SUPPORT, SUPPORT_LABELS, tiny_model_dir), steps=5)
    logits = algo.predict(tokenized(QUERY, [0, 0, 0], tiny_model_dir), batch_size=2)

    s = manual_embeddings(algo.model, tiny_model_dir, SUPPORT)
    q = manual_embeddings(algo.model, tiny_model_dir, QUERY)
    cos = (q @ s.T) / (q.norm(dim=1)[:, None] * s.norm(dim=1)[None])
    attention = torch.softmax(5.0 * cos, dim=1)
    labels = torch.tensor(SUPPORT_LABELS)
    expected = torch.stack([attention[:, labels == c].sum(dim=1) for c in (0, 2)], dim=1)
    np.testing.assert_allclose(np.exp(logits[:, [0, 2]]), expected.numpy(), rtol=1e-4, atol=1e-6)
    assert np.all(np.isneginf(logits[:, 1]))


def test_meta_training_beats_the_untrained_init(tmp_path, tiny_model_dir, review_json):
    algo, tasks, params = build(tmp_path, tiny_model_dir, review_json, "matchnet")
    before = few_shot_accuracy(algo, tasks, params)
    metrics = meta_train(algo, tasks, params, steps=20)
    after = few_shot_accuracy(algo, tasks, params)
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert after >= before + 0.2, (before, after)


def test_adapted_folder_predicts_like_the_in_memory_matchnet(tmp_path, tiny_model_dir, review_json):
    from .metric_helpers import assert_adapted_folder_predicts_like_memory

    assert_adapted_folder_predicts_like_memory(tmp_path, tiny_model_dir, review_json, "matchnet")
