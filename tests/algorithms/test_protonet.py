import numpy as np
import pytest
import torch

from kshot.algorithms.heads import linear_head
from kshot.algorithms.protonet import prototype_logits
from kshot.config import Params
from kshot.errors import ModelError
from kshot.models import load_model, load_tokenizer
from kshot.training.setup import build_algorithm

from .metric_helpers import (
    assert_adapted_folder_predicts_like_memory,
    build,
    few_shot_accuracy,
    manual_embeddings,
    meta_train,
    tokenized,
)

SUPPORT = ["good great love", "nice item", "bad poor it", "awful worst the product was", "hate"]
SUPPORT_LABELS = [2, 2, 0, 0, 0]  # label 1 ("b") has no support example
QUERY = ["great product", "broken waste sad", "the item is very perfect and good"]


def _protonet(model_dir, **params):
    model = load_model(str(model_dir), ["a", "b", "c"])
    return build_algorithm(
        model, Params.from_dict({"algorithm": "protonet", **params}), None, load_tokenizer(str(model_dir))
    )


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_logits_match_a_direct_computation(tiny_model_dir, distance):
    algo = _protonet(tiny_model_dir, distance=distance, cosine_scale=7.0)
    algo.adapt(tokenized(SUPPORT, SUPPORT_LABELS, tiny_model_dir), steps=5)
    logits = algo.predict(tokenized(QUERY, [0, 0, 0], tiny_model_dir), batch_size=2)

    s = manual_embeddings(algo.model, tiny_model_dir, SUPPORT)
    q = manual_embeddings(algo.model, tiny_model_dir, QUERY)
    protos = torch.stack([s[2:].mean(0), s[:2].mean(0)])  # classes 0 and 2, in label order
    if distance == "euclidean":
        expected = -((q[:, None, :] - protos[None]) ** 2).sum(-1)
    else:
        expected = 7.0 * (q[:, None, :] * protos[None]).sum(-1) / (q.norm(dim=1)[:, None] * protos.norm(dim=1)[None])
    np.testing.assert_allclose(logits[:, [0, 2]], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert np.all(np.isneginf(logits[:, 1])), "a label absent from the support set can never be predicted"


def test_linear_head_gives_the_same_probabilities_as_the_distance():
    g = torch.Generator().manual_seed(0)
    protos, queries = torch.randn(4, 16, generator=g), torch.randn(9, 16, generator=g)
    weight, bias = linear_head(protos)
    torch.testing.assert_close(
        torch.softmax(queries @ weight.T + bias, dim=-1),
        torch.softmax(prototype_logits(queries, protos, "euclidean", 1.0), dim=-1),
    )


def test_predict_before_adapt_is_a_clear_error(tiny_model_dir):
    algo = _protonet(tiny_model_dir)
    with pytest.raises(ModelError, match="adapt"):
        algo.predict(tokenized(QUERY, [0, 0, 0], tiny_model_dir), batch_size=4)


def test_reset_restores_the_meta_parameters_after_fine_tuning(tiny_model_dir):
    algo = _protonet(tiny_model_dir, metric_finetune=True, inner_lr=1e-2)
    before = [p.detach().clone() for p in algo.model.parameters()]
    stats = algo.adapt(tokenized(SUPPORT, SUPPORT_LABELS, tiny_model_dir), steps=3)
    assert stats["steps"] == 3
    assert any(not torch.equal(a, p) for a, p in zip(before, algo.model.parameters()))
    algo.reset()
    assert all(torch.equal(a, p) for a, p in zip(before, algo.model.parameters()))


def test_meta_training_beats_the_untrained_init(tmp_path, tiny_model_dir, review_json):
    algo, tasks, params = build(tmp_path, tiny_model_dir, review_json, "protonet")
    before = few_shot_accuracy(algo, tasks, params)
    metrics = meta_train(algo, tasks, params, steps=20)
    after = few_shot_accuracy(algo, tasks, params)
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert after >= before + 0.2, (before, after)


@pytest.mark.parametrize("finetune", [False, True])
def test_adapted_folder_predicts_like_the_in_memory_protonet(tmp_path, tiny_model_dir, review_json, finetune):
    assert_adapted_folder_predicts_like_memory(
        tmp_path, tiny_model_dir, review_json, "protonet", metric_finetune=finetune
    )


def test_adapted_folder_card_says_pipeline_serves_it(tmp_path, tiny_model_dir, review_json):
    """The card of an adapted protonet folder says it is a plain classifier, and `transformers.pipeline`
    alone gives `kshot predict`'s labels."""
    from transformers import pipeline

    from kshot.training import MetaTrainer, adapt_model, predict_texts

    from .. import synthetic
    from .metric_helpers import run_config, run_params, write_support_csv

    config = run_config(tmp_path, tiny_model_dir, review_json)
    MetaTrainer(config, run_params("protonet", meta_steps=10, test_after_train=False)).train()
    assert "kshot adapt --model" in (tmp_path / "out" / "README.md").read_text()
    pool = synthetic.make_examples(6, 40, seed=5)
    rows = [r for r in pool if r["label"] == "positive"][:5] + [r for r in pool if r["label"] == "negative"][:5]
    adapt_model(tmp_path / "out", write_support_csv(tmp_path / "support.csv", rows), tmp_path / "adapted")
    card = (tmp_path / "adapted" / "README.md").read_text()
    assert "transformers.pipeline" in card and "metric_support.safetensors" not in card

    texts = [r["text"] for r in synthetic.make_examples(6, 16, seed=7)]
    folder = str(tmp_path / "adapted")
    by_pipeline = [p["label"] for p in pipeline("text-classification", model=folder, tokenizer=folder)(texts)]
    by_kshot = [p["label"] for p in predict_texts(folder, texts)]
    assert by_pipeline == by_kshot and len(set(by_kshot)) == 2


@pytest.mark.parametrize("overrides", [{"support_sampling": "total", "k_support": 2}, {"k_query": 0}])
def test_episodes_without_a_query_for_every_class_still_train(tmp_path, tiny_model_dir, review_json, overrides):
    """K-in-total support can miss a class of the query; k_query=0 splits the support set instead."""
    algo, tasks, params = build(tmp_path, tiny_model_dir, review_json, "protonet", **overrides)
    before = [m.clone() for m in algo.state.meta]
    metrics = meta_train(algo, tasks, params, steps=4)
    assert all(np.isfinite(m["loss"]) for m in metrics)
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.state.meta))
