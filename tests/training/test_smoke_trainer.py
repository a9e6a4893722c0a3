from kshot.training import MetaTrainer


def test_train_runs_and_saves_best_model(tiny_run):
    config, params = tiny_run
    result = MetaTrainer(config, params).train()
    assert result.steps == params.meta_steps
    assert result.test is not None and set(result.test["tasks"]) == {"domain6", "domain7"}
