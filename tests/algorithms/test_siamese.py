import pytest
import torch
import torch.nn.functional as F

from kshot.algorithms.siamese import PairScorer, neighbour_scores, pair_targets

from .metric_helpers import (
    assert_adapted_folder_predicts_like_memory,
    build,
    few_shot_accuracy,
    meta_train,
)


def test_pairs_are_labelled_same_or_different_class():
    targets = pair_targets(torch.tensor([0, 1, 2]), torch.tensor([1, 0, 0, 2]))
    assert targets.tolist() == [[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]]


def test_the_pair_scorer_is_symmetric():
    torch.manual_seed(0)
    scorer = PairScorer(8, 16)
    a, b = torch.randn(5, 8), torch.randn(3, 8)
    torch.testing.assert_close(scorer(a, b), scorer(b, a).T)


def test_a_class_scores_the_mean_of_its_nearest_support_examples():
    logits = torch.tensor([[0.9, -1.0, 0.1, 0.5, 2.0]])
    labels = torch.tensor([0, 0, 0, 0, 1])
    scores = neighbour_scores(logits, labels, torch.tensor([0, 1]), k=2)
    torch.testing.assert_close(scores, torch.tensor([[(0.9 + 0.5) / 2, 2.0]]))


def test_positive_and_negative_pairs_weigh_half_the_loss_each(tmp_path, tiny_model_dir, review_json):
    algo, _, _ = build(tmp_path, tiny_model_dir, review_json, "siamese")
    torch.manual_seed(1)
    s_emb, q_emb = torch.randn(6, 32), torch.randn(4, 32)
    s_lab, q_lab = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 1, 1, 1])
    loss, _ = algo.episode_loss(s_emb, s_lab, q_emb, q_lab)
    logits, targets = algo.scorer(q_emb, s_emb), pair_targets(q_lab, s_lab)
    pos = F.binary_cross_entropy_with_logits(logits[targets == 1], torch.ones(int(targets.sum())))
    neg = F.binary_cross_entropy_with_logits(logits[targets == 0], torch.zeros(int((1 - targets).sum())))
    assert loss.item() == pytest.approx(0.5 * pos.item() + 0.5 * neg.item(), rel=1e-5)


def test_meta_training_beats_the_untrained_init(tmp_path, tiny_model_dir, review_json):
    algo, tasks, params = build(tmp_path, tiny_model_dir, review_json, "siamese", scorer_lr=1e-2)
    before = few_shot_accuracy(algo, tasks, params)
    metrics = meta_train(algo, tasks, params, steps=30)
    after = few_shot_accuracy(algo, tasks, params)
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert after >= before + 0.2, (before, after)


def test_adapted_folder_predicts_like_the_in_memory_siamese(tmp_path, tiny_model_dir, review_json):
    assert_adapted_folder_predicts_like_memory(tmp_path, tiny_model_dir, review_json, "siamese", scorer_lr=1e-2)
