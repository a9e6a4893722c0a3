"""`kshot benchmark intent`'s runner on a miniature class split: algorithms and baselines side by side,
every setting scored on the same episodes."""

from __future__ import annotations

import json
from dataclasses import replace

from kshot.benchmark.new_classes import SETTINGS, NewClassSpec, format_new_classes, run_new_classes
from kshot.config import KshotConfig, Params

from .. import synthetic


def _setup(tmp_path, **params):
    # Validation episodes take the main setting's shape (5-way): five validation classes at least.
    data = synthetic.write_class_splits(tmp_path / "split", splits=(("train", 6), ("valid", 5), ("test", 5)))
    model = synthetic.build_tiny_model(tmp_path / "model", words=synthetic.intent_vocabulary(16))
    config = KshotConfig.from_dict(
        {
            "data": {"format": "class_splits", "cache_dir": str(tmp_path / "cache")},
            "model": {"name_or_path": str(model)},
            "logging": {"log_dir": str(tmp_path / "logs"), "progress_bar": False},
        }
    )
    base = {"n_way": 3, "k_support": 2, "k_query": 2, "query_sampling": "per_class", "eval_every": 0}
    return data, config, Params.from_dict({**base, "mixed_precision": "no", "max_length": 32, **params})


def test_algorithms_and_baselines_are_scored_in_every_setting(tmp_path):
    data, config, params = _setup(tmp_path)
    spec = NewClassSpec(
        config,
        params,
        ["protonet"],
        [("tiny-01", str(data))],
        tmp_path / "bench",
        budget_steps=2,
        baselines=["frozen_prototypes"],
        episodes=4,
    )
    results = run_new_classes(spec)["tiny-01"]
    assert set(results) == {"protonet", "frozen_prototypes"}
    for method, r in results.items():
        assert set(r["settings"]) == set(SETTINGS), method
        assert all(0.0 <= m["accuracy"] <= 1.0 for m in r["settings"].values())
    stored = json.loads((tmp_path / "bench" / "results.json").read_text())
    # The algorithms' per-episode scores stay beside the split's summary (for paired comparisons).
    runs = json.loads((tmp_path / "bench" / "tiny-01" / "results.json").read_text())["results"]
    assert len(runs["protonet"]["test"]["tasks"]) == 4
    assert stored["tiny-01"]["frozen_prototypes"]["settings"]["all-way 5-shot"]["episodes"] == 4
    table = (tmp_path / "bench" / "results.md").read_text()
    assert "| protonet |" in table and "| frozen_prototypes |" in table and "all-way 5-shot" in table
    assert table.strip() == format_new_classes(stored, list(SETTINGS))


def test_with_class_names_the_baselines_are_scored_with_and_without_them_on_the_same_episodes(tmp_path):
    data, config, params = _setup(tmp_path, label_names_as_support=True)
    runs = {}
    for flag in (True, False):
        spec = NewClassSpec(
            config,
            replace(params, label_names_as_support=flag),
            [],
            [("tiny-01", str(data))],
            tmp_path / f"bench-{flag}",
            baselines=["frozen_prototypes", "logistic_regression"],
            episodes=3,
        )
        runs[flag] = run_new_classes(spec)["tiny-01"]
    assert list(runs[True]) == [
        "frozen_prototypes",
        "frozen_prototypes+names",
        "logistic_regression",
        "logistic_regression+names",
    ]
    assert list(runs[False]) == ["frozen_prototypes", "logistic_regression"]
    for method in runs[False]:  # the plain rows are the flag-off run's, score for score
        for setting, mean in runs[False][method]["settings"].items():
            assert runs[True][method]["settings"][setting]["accuracy"] == mean["accuracy"]
