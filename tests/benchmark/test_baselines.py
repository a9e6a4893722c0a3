"""The benchmark baselines on hand-written episodes: the real bundled all-MiniLM-L6-v2 on three obvious
intents (a tiny random model could not tell them apart), episodes built as plain namespaces."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from kshot.benchmark.baselines import evaluate_baseline, methods
from kshot.errors import ConfigError, DataError

CLASSES = ["weather", "bank_transfer", "music"]
SUPPORT = [
    ("Will it rain in Paris tomorrow?", 0),
    ("What's the temperature outside right now?", 0),
    ("Send 200 dollars from my checking account to my savings", 1),
    ("How do I transfer money to my brother's bank account?", 1),
    ("Play some jazz music", 2),
    ("Put on my favourite playlist", 2),
]
QUERY = [
    ("Is it going to snow this weekend?", 0),
    ("Do I need an umbrella today, is rain forecast?", 0),
    ("Wire 50 euros to my landlord's account", 1),
    ("Move money from savings to checking please", 1),
    ("Play the next song by Queen", 2),
    ("Start playing some rock music", 2),
]


def _examples(pairs):
    return SimpleNamespace(texts=[t for t, _ in pairs], labels=np.array([y for _, y in pairs], dtype=np.int64))


def _task(name="intents", support=SUPPORT, query=QUERY, classes=CLASSES):
    return SimpleNamespace(name=name, support=_examples(support), query=_examples(query), classes=list(classes))


@pytest.fixture(scope="module")
def minilm() -> str:
    from kshot.models.loading import default_model_path

    return str(default_model_path())


@pytest.mark.parametrize("method", ["frozen_prototypes", "logistic_regression"])
def test_frozen_baselines_get_obvious_intents_right(minilm, method):
    res = evaluate_baseline(method, [_task()], minilm, batch_size=4)
    task = res["tasks"]["intents"]
    assert task["n_query"] == 6
    assert task["accuracy"] >= 5 / 6
    assert 0.0 <= task["macro_f1"] <= 1.0
    assert task["train_seconds"] >= 0.0
    mean = res["mean"]
    assert mean["episodes"] == 1
    assert mean["accuracy_ci95"] == 0.0
    assert mean["accuracy"] == task["accuracy"] and mean["macro_f1"] == task["macro_f1"]
    assert mean["seconds"] >= mean["encode_seconds"] > 0.0


def test_episodes_share_encodings_and_max_episodes_and_ci(minilm):
    # The second episode relabels the classes (ids permuted): the prediction must follow the ids.
    perm = {0: 2, 1: 0, 2: 1}
    swapped = _task(
        "swapped",
        [(t, perm[y]) for t, y in SUPPORT],
        [(t, perm[y]) for t, y in QUERY],
        [CLASSES[1], CLASSES[2], CLASSES[0]],
    )
    # A third episode whose query labels contradict its support: every answer counts as wrong.
    contradicted = _task("contradicted", SUPPORT, [(t, (y + 1) % 3) for t, y in QUERY])
    episodes = [_task(), swapped, contradicted]
    res = evaluate_baseline("frozen_prototypes", episodes, minilm, max_episodes=2)
    assert list(res["tasks"]) == ["intents", "swapped"]
    assert res["tasks"]["intents"]["accuracy"] == res["tasks"]["swapped"]["accuracy"]
    assert res["mean"]["episodes"] == 2
    all3 = evaluate_baseline("frozen_prototypes", episodes, minilm, precision="bf16")
    accs = np.array([t["accuracy"] for t in all3["tasks"].values()])
    assert accs[2] <= 1 / 6 < 5 / 6 <= accs[0]
    assert all3["mean"]["accuracy"] == pytest.approx(accs.mean())
    assert all3["mean"]["accuracy_ci95"] > 0
    assert all3["mean"]["accuracy_ci95"] == pytest.approx(1.96 * accs.std(ddof=1) / np.sqrt(3))


def test_unknown_method_names_the_choices(minilm):
    with pytest.raises(ConfigError) as err:
        evaluate_baseline("frozen_prototype", [_task()], minilm)
    msg = str(err.value)
    assert "'frozen_prototype'" in msg and "Did you mean 'frozen_prototypes'?" in msg
    for name in methods():
        assert name in msg
    assert methods() == ["frozen_prototypes", "logistic_regression", "setfit"]


def test_bad_episodes_and_settings_are_refused(minilm):
    with pytest.raises(DataError, match="no support example for the classes"):
        evaluate_baseline("frozen_prototypes", [_task(support=SUPPORT[:4])], minilm)
    with pytest.raises(DataError, match="labels must be ids 0..2"):
        evaluate_baseline("frozen_prototypes", [_task(query=[("x", 3)])], minilm)
    with pytest.raises(DataError, match="empty"):
        evaluate_baseline("frozen_prototypes", [], minilm)
    with pytest.raises(ConfigError, match="Choose from: fp32, bf16"):
        evaluate_baseline("frozen_prototypes", [_task()], minilm, precision="fp16")


# About 4 s for one 3-way 2-shot episode on one CPU thread, so it runs with the fast tests where setfit is installed.
@pytest.mark.skipif(importlib.util.find_spec("setfit") is None, reason="setfit is not installed")
def test_setfit_trains_on_one_episode(minilm):
    res = evaluate_baseline("setfit", [_task(), _task("second")], minilm, max_episodes=1)
    task = res["tasks"]["intents"]
    assert list(res["tasks"]) == ["intents"]
    assert task["accuracy"] >= 5 / 6
    assert task["train_seconds"] > 0.0
    assert res["mean"]["accuracy_ci95"] == 0.0
