import torch
from safetensors.torch import load_file

from kshot.algorithms.metric import SCORER_FILE
from kshot.models import load_model, load_tokenizer
from kshot.training import MetaTrainer
from kshot.training.saved import saved_params
from kshot.training.setup import build_algorithm

from .metric_helpers import (
    assert_adapted_folder_predicts_like_memory,
    build,
    few_shot_accuracy,
    meta_train,
    run_config,
    run_params,
)


def test_one_episode_sends_gradients_to_the_relation_module_and_the_encoder(tmp_path, tiny_model_dir, review_json):
    algo, tasks, _ = build(tmp_path, tiny_model_dir, review_json, "relationnet")
    episode = tasks.sampler.episode(0, 0)
    loss, _ = algo._episode_loss(episode.support, episode.query)
    loss.backward()
    for name, p in algo.scorer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert algo.model.base_model.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_a_meta_step_changes_the_relation_module(tmp_path, tiny_model_dir, review_json):
    algo, tasks, params = build(tmp_path, tiny_model_dir, review_json, "relationnet")
    before = [p.detach().clone() for p in algo.scorer.parameters()]
    meta_train(algo, tasks, params, steps=1)
    assert all(not torch.equal(a, p) for a, p in zip(before, algo.scorer.parameters()))


def test_meta_training_beats_the_untrained_init(tmp_path, tiny_model_dir, review_json):
    algo, tasks, params = build(tmp_path, tiny_model_dir, review_json, "relationnet", scorer_lr=1e-2)
    before = few_shot_accuracy(algo, tasks, params)
    metrics = meta_train(algo, tasks, params, steps=30)
    after = few_shot_accuracy(algo, tasks, params)
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert after >= before + 0.2, (before, after)


def test_the_saved_model_carries_the_trained_relation_module(tmp_path, tiny_model_dir, review_json):
    config = run_config(tmp_path, tiny_model_dir, review_json)
    trainer = MetaTrainer(config, run_params("relationnet", meta_steps=3, test_after_train=False))
    trainer.train()
    trained = trainer.algorithm.scorer.state_dict()
    saved = load_file(str(tmp_path / "out" / SCORER_FILE))
    assert set(saved) == set(trained)
    assert all(torch.equal(saved[k], trained[k].cpu()) for k in trained)

    model = load_model(str(tmp_path / "out"))
    reloaded = build_algorithm(model, saved_params(tmp_path / "out"), None, load_tokenizer(str(tmp_path / "out")))
    fresh = {k: v.clone() for k, v in reloaded.scorer.state_dict().items()}
    reloaded.load_pretrained(str(tmp_path / "out"))
    assert all(torch.equal(reloaded.scorer.state_dict()[k], saved[k]) for k in saved)
    assert not all(torch.equal(fresh[k], saved[k]) for k in saved), "training must have moved the module"


def test_adapted_folder_predicts_like_the_in_memory_relationnet(tmp_path, tiny_model_dir, review_json):
    assert_adapted_folder_predicts_like_memory(tmp_path, tiny_model_dir, review_json, "relationnet", scorer_lr=1e-2)


def test_resume_equals_uninterrupted_run(tiny_run, tmp_path):
    """The checkpoint holds the encoder, the relation module and Adam's moments of both."""
    import dataclasses

    from ..training.test_resume import StopAt

    config, params = tiny_run  # evaluates at step 3 and 6, checkpoints every 2
    params = dataclasses.replace(
        params, algorithm="relationnet", metric_lr=1e-3, scorer_lr=1e-2, scorer_hidden=16, test_after_train=False
    )
    full = MetaTrainer(dataclasses.replace(config, output_dir=str(tmp_path / "full")), params)
    reference = full.train()
    MetaTrainer(
        dataclasses.replace(config, output_dir=str(tmp_path / "resumed")), params, callbacks=[StopAt(4, "should_stop")]
    ).train()
    resumed = MetaTrainer(dataclasses.replace(config, output_dir=str(tmp_path / "resumed")), params)
    result = resumed.train(resume=True)
    assert resumed.start_step == 4 and result.validation == reference.validation
    assert all(
        torch.equal(a, b) for a, b in zip(resumed.algorithm.state_dict()["meta"], full.algorithm.state_dict()["meta"])
    )
    saved_full, saved_resumed = (
        load_file(str(tmp_path / "full" / SCORER_FILE)),
        load_file(str(tmp_path / "resumed" / SCORER_FILE)),
    )
    assert all(torch.equal(saved_full[k], saved_resumed[k]) for k in saved_full)
