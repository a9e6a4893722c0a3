"""Reading tasks: ARSC folders, review JSON and `datasets` sources, and every bad input's message."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kshot.config import DataConfig
from kshot.data import load_tasks
from kshot.errors import DataError

from .. import synthetic


def arsc_config(path, **kwargs) -> DataConfig:
    return DataConfig.from_dict({"format": "arsc", "path": str(path), **kwargs})


def read_lines(path) -> list[tuple[str, int]]:
    rows = []
    for line in path.read_text().splitlines():
        text, label = line.rsplit("\t", 1)
        rows.append((text, 1 if label == "1" else 0))
    return rows


# ---------------------------------------------------------------------------------------------- ARSC


def test_arsc_official_protocol(mini_arsc):
    tasks = load_tasks(arsc_config(mini_arsc))
    assert tasks.label_names == ["negative", "positive"]
    assert [t.name for t in tasks.train] == [f"{d}.{t}" for d in ("alpha", "beta", "gamma") for t in ("t2", "t4", "t5")]
    assert [t.name for t in tasks.test] == ["delta.t2", "delta.t4", "delta.t5"]
    for task in tasks.test:
        # support = the target task's .train file (5 + 5), query = its .test file, in file order
        support = read_lines(mini_arsc / f"{task.name}.train")
        query = read_lines(mini_arsc / f"{task.name}.test")
        assert list(zip(task.support.texts, task.support.labels.tolist())) == support
        assert list(zip(task.query.texts, task.query.labels.tolist())) == query
        assert sorted(np.bincount(task.support.labels).tolist()) == [5, 5]
    # the training tasks read the .train files, validation (by default) the training domains' .dev files
    alpha = tasks.train[0]
    assert list(zip(alpha.texts, alpha.labels.tolist())) == read_lines(mini_arsc / "alpha.t2.train")
    assert tasks.validation_is_default
    assert [t.name for t in tasks.validation] == [t.name for t in tasks.train]
    assert tasks.validation[0].texts == [t for t, _ in read_lines(mini_arsc / "alpha.t2.dev")]


def test_arsc_test_domains_never_in_training_or_validation(mini_arsc):
    tasks = load_tasks(arsc_config(mini_arsc))
    test_domains = {t.support.domain for t in tasks.test} | {t.query.domain for t in tasks.test}
    assert test_domains == {"delta"}
    assert all(t.domain != "delta" for t in tasks.train + tasks.validation)


def test_arsc_explicit_domain_lists(mini_arsc):
    tasks = load_tasks(arsc_config(mini_arsc, validation_domains=["gamma"], test_domains=["beta"]))
    assert {t.domain for t in tasks.train} == {"alpha", "delta"}
    assert [t.name for t in tasks.validation] == ["gamma.t2", "gamma.t4", "gamma.t5"]
    assert not tasks.validation_is_default
    assert {t.support.domain for t in tasks.test} == {"beta"}


def test_arsc_held_out_validation_is_scored_like_a_held_out_test_domain(mini_arsc):
    """validation_protocol held_out: model selection (and kshot tune) on the test protocol, targets untouched."""
    as_test = load_tasks(arsc_config(mini_arsc, test_domains=["beta"]))
    held = load_tasks(arsc_config(mini_arsc, validation_domains=["beta"], validation_protocol="held_out"))
    assert held.validation == [] and {t.domain for t in held.train} == {"alpha", "gamma"}
    assert [t.name for t in held.validation_fixed] == [t.name for t in as_test.test]
    for mine, theirs in zip(held.validation_fixed, as_test.test):
        assert mine.support.texts == theirs.support.texts and mine.query.texts == theirs.query.texts
    assert [t.name for t in held.test] == ["delta.t2", "delta.t4", "delta.t5"]  # the targets stay the test tasks


def test_arsc_training_domain_held_out_as_test_gets_a_five_shot_support(mini_arsc):
    # Tuning on held-out training domains: their train files are full, the support is 5 + 5 of them.
    tasks = load_tasks(arsc_config(mini_arsc, test_domains=["beta"]))
    again = load_tasks(arsc_config(mini_arsc, test_domains=["beta"]))
    for task, same in zip(tasks.test, again.test):
        pool = read_lines(mini_arsc / f"{task.name}.train")
        support = list(zip(task.support.texts, task.support.labels.tolist()))
        assert len(pool) > 10 and sorted(np.bincount(task.support.labels).tolist()) == [5, 5]
        assert set(support) <= set(pool)
        assert support == list(zip(same.support.texts, same.support.labels.tolist()))  # deterministic
        assert list(zip(task.query.texts, task.query.labels.tolist())) == read_lines(mini_arsc / f"{task.name}.test")


def test_arsc_unknown_domain_suggests_the_closest(mini_arsc):
    with pytest.raises(DataError) as err:
        load_tasks(arsc_config(mini_arsc, train_domains=["alpha", "betta"]))
    message = str(err.value)
    assert "Unknown domain 'betta' in data.train_domains" in message
    assert "Did you mean 'beta'?" in message
    assert "alpha, beta, delta, gamma" in message


def test_arsc_default_test_domain_listed_for_training_is_refused(mini_arsc):
    # test_domains left at the default (workspace.target.list = delta): training on delta would leak.
    with pytest.raises(DataError, match="Test domain\\(s\\) delta are also training domains"):
        load_tasks(arsc_config(mini_arsc, train_domains=["alpha", "delta"]))


def test_arsc_missing_folder(tmp_path):
    with pytest.raises(DataError, match="ARSC folder .*nowhere does not exist"):
        load_tasks(arsc_config(tmp_path / "nowhere"))


def test_arsc_missing_split_file_names_it(mini_arsc):
    (mini_arsc / "beta.t4.train").unlink()
    with pytest.raises(DataError, match="Cannot read .*beta.t4.train"):
        load_tasks(arsc_config(mini_arsc))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("great product\t3", r"line 2: label '3' is not one of 1, -1"),
        ("great product no tab", r"line 2: expected 'text<TAB>label'"),
        ("   \t1", r"line 2: the text is empty"),
    ],
)
def test_arsc_bad_line_names_file_and_line(mini_arsc, line, expected):
    path = mini_arsc / "alpha.t5.train"
    lines = path.read_text().splitlines()
    lines.insert(1, line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"alpha.t5.train, {expected}"):
        load_tasks(arsc_config(mini_arsc))


def test_arsc_file_that_is_not_text(mini_arsc):
    (mini_arsc / "gamma.t2.dev").write_bytes(b"\xff\xfe\x00garbage\x9c\n")
    with pytest.raises(DataError, match="gamma.t2.dev is not UTF-8 text"):
        load_tasks(arsc_config(mini_arsc))


# --------------------------------------------------------------------------------------- review JSON


def test_review_json_default_test_domains(tmp_path):
    names = ["automotive", "books", "office_products", "dvd", "computer_&_video_games"]
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"data": synthetic.make_rows(5, 20, domain_names=names)}))
    tasks = load_tasks(DataConfig.from_dict({"format": "review_json", "path": str(path)}))
    assert [t.name for t in tasks.train] == ["books", "dvd"]
    assert [t.name for t in tasks.test_pool] == ["automotive", "computer_&_video_games", "office_products"]
    assert tasks.label_names == ["negative", "positive"]
    books = tasks.train[0]
    expected = [r for r in synthetic.make_rows(5, 20, domain_names=names) if r["domain"] == "books"]
    assert books.texts == [r["text"] for r in expected]
    assert books.labels.tolist() == [int(r["label"] == "positive") for r in expected]


def test_review_json_domain_lists(review_json):
    config = DataConfig.from_dict(
        {
            "format": "review_json",
            "path": str(review_json),
            "validation_domains": ["domain5"],
            "test_domains": ["domain6", "domain7"],
        }
    )
    tasks = load_tasks(config)
    assert [t.name for t in tasks.train] == [f"domain{i}" for i in range(5)]
    assert [t.name for t in tasks.validation] == ["domain5"]
    assert [t.name for t in tasks.test_pool] == ["domain6", "domain7"]
    assert all(len(t) == 60 for t in tasks.train)


def test_review_json_missing_file(tmp_path):
    with pytest.raises(DataError, match="Review JSON file .*absent.json does not exist"):
        load_tasks(DataConfig.from_dict({"format": "review_json", "path": str(tmp_path / "absent.json")}))


def test_review_json_unreadable_file(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text('{"data": [{"text": "good", "label": ')
    with pytest.raises(DataError, match="Cannot load the dataset '.*dataset.json' \\(review_json\\)"):
        load_tasks(DataConfig.from_dict({"format": "review_json", "path": str(path)}))


# ------------------------------------------------------------------------------------ `datasets` (hf)

COLUMNS = {"text": "review", "label": "sentiment", "domain": "category"}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_hf_local_files_with_custom_columns(tmp_path, suffix):
    rows = synthetic.make_rows(4, 25)
    path = synthetic.write_table(tmp_path / f"reviews{suffix}", rows, COLUMNS)
    config = DataConfig.from_dict(
        {
            "format": "hf",
            "path": str(path),
            "text_column": "review",
            "label_column": "sentiment",
            "domain_column": "category",
            "label_names": ["positive", "negative"],
            "test_domains": ["domain3"],
        }
    )
    tasks = load_tasks(config)
    assert tasks.label_names == ["positive", "negative"]
    assert [t.name for t in tasks.train] == ["domain0", "domain1", "domain2"]
    assert [t.name for t in tasks.test_pool] == ["domain3"]
    domain1 = [r for r in rows if r["domain"] == "domain1"]
    assert tasks.train[1].texts == [r["text"] for r in domain1]
    # label ids follow label_names' order, not the sorted order
    assert tasks.train[1].labels.tolist() == [0 if r["label"] == "positive" else 1 for r in domain1]


def test_hf_labels_default_to_sorted_distinct_values(tmp_path):
    rows = [{**r, "label": {"positive": "pos", "negative": "neg"}[r["label"]]} for r in synthetic.make_rows(3, 20)]
    path = synthetic.write_table(tmp_path / "data.jsonl", rows)
    tasks = load_tasks(DataConfig.from_dict({"format": "hf", "path": str(path)}))
    assert tasks.label_names == ["neg", "pos"]
    assert tasks.test_pool == []  # no default test domains outside review_json / ARSC


def test_hf_missing_column_names_it_and_lists_the_columns(tmp_path):
    path = synthetic.write_table(tmp_path / "data.csv", synthetic.make_rows(2, 10), COLUMNS)
    config = DataConfig.from_dict(
        {
            "format": "hf",
            "path": str(path),
            "text_column": "reviews",
            "label_column": "sentiment",
            "domain_column": "category",
        }
    )
    with pytest.raises(DataError) as err:
        load_tasks(config)
    message = str(err.value)
    assert "no column 'reviews' (data.text_column)" in message
    assert "Did you mean 'review'?" in message
    assert "Columns: review, sentiment, category" in message


def test_hf_empty_text_names_the_row(tmp_path):
    rows = synthetic.make_rows(2, 10)
    rows[7]["text"] = "   "
    path = synthetic.write_table(tmp_path / "data.jsonl", rows)
    with pytest.raises(DataError, match=r"data.jsonl, row 7: the text \('text'\) is empty"):
        load_tasks(DataConfig.from_dict({"format": "hf", "path": str(path)}))


def test_hf_missing_text_value_names_the_row(tmp_path):
    rows = synthetic.make_rows(2, 10)
    rows[3]["text"] = None
    path = synthetic.write_table(tmp_path / "data.parquet", rows)
    with pytest.raises(DataError, match=r"row 3: the text \('text'\) is empty"):
        load_tasks(DataConfig.from_dict({"format": "hf", "path": str(path)}))


def test_hf_label_outside_label_names(tmp_path):
    rows = synthetic.make_rows(2, 10)
    rows[4]["label"] = "neutral"
    path = synthetic.write_table(tmp_path / "data.csv", rows)
    config = DataConfig.from_dict({"format": "hf", "path": str(path), "label_names": ["negative", "positive"]})
    with pytest.raises(DataError, match=r"row 4: label 'neutral' is not in data.label_names \(negative, positive\)"):
        load_tasks(config)


def test_hf_unknown_domain_suggests_the_closest(tmp_path):
    path = synthetic.write_table(tmp_path / "data.csv", synthetic.make_rows(3, 10))
    config = DataConfig.from_dict({"format": "hf", "path": str(path), "test_domains": ["domian2"]})
    with pytest.raises(DataError, match="Unknown domain 'domian2' in data.test_domains .*Did you mean 'domain2'\\?"):
        load_tasks(config)


def test_hf_unreadable_file_names_it(tmp_path):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match="Cannot load the dataset '.*data.parquet' \\(hf\\)"):
        load_tasks(DataConfig.from_dict({"format": "hf", "path": str(path)}))


def test_hf_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="absent.csv"):
        load_tasks(DataConfig.from_dict({"format": "hf", "path": str(tmp_path / "absent.csv")}))


def test_hf_unsupported_file_type(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        load_tasks(DataConfig.from_dict({"format": "hf", "path": str(path)}))


def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    rows = synthetic.make_rows(3, 12)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "ds"))
    tasks = load_tasks(
        DataConfig.from_dict({"format": "hf", "path": str(tmp_path / "ds"), "test_domains": ["domain0"]})
    )
    assert [t.name for t in tasks.train] == ["domain1", "domain2"]
    assert tasks.test_pool[0].texts == [r["text"] for r in rows if r["domain"] == "domain0"]
