"""Saved models: a standard Hugging Face folder plus kshot.json and a model card, written safely."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from kshot.errors import ModelError
from kshot.models import load_model, load_tokenizer, model_label_names, read_kshot_meta, resolve_model_name, save_model

META = {
    "algorithm": "reptile",
    "base_model": "tiny",
    "label_names": ["spam", "ham"],
    "params": {"algorithm": "reptile", "inner_lr": 1e-3},
    "config": {"data": {"format": "hf", "path": "x.csv"}},
    "results": {
        "test": {"tasks": {"t1": {"accuracy": 0.875, "macro_f1": 0.8}}, "mean": {"accuracy": 0.875, "macro_f1": 0.8}}
    },
}


@pytest.fixture()
def model_and_tokenizer(tiny_model_dir):
    torch.manual_seed(0)
    return load_model(str(tiny_model_dir), ["spam", "ham"]), load_tokenizer(str(tiny_model_dir))


def test_saved_folder_is_complete(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    out = save_model(model, tokenizer, tmp_path / "model", META, {"extra.json": {"a": 1}})
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "kshot.json",
        "README.md",
        "extra.json",
    } <= names
    assert "tokenizer.json" in names or "vocab.txt" in names
    assert not [n for n in names if n.startswith(".saving-")]

    meta = read_kshot_meta(out)
    assert meta["label_names"] == ["spam", "ham"] and meta["params"]["inner_lr"] == 1e-3
    assert meta["config"]["data"]["format"] == "hf" and "kshot_version" in meta
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "reptile" in card
    assert "| t1 | 87.50 | 0.800 |" in card
    assert "spam, ham" in card

    reloaded = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert model_label_names(reloaded) == ["spam", "ham"]
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_saving_keeps_other_entries_and_replaces_the_model(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    out = tmp_path / "model"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "state.pt").write_text("keep me")
    save_model(model, tokenizer, out, META)
    with torch.no_grad():
        model.classifier.weight.add_(1.0)
    save_model(model, tokenizer, out, {**META, "step": 7})
    assert (out / "checkpoint" / "state.pt").read_text() == "keep me"
    assert read_kshot_meta(out)["step"] == 7
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert torch.equal(reloaded.classifier.weight, model.classifier.weight)


def test_a_failed_save_leaves_the_previous_model_and_no_temporary_folder(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    out = tmp_path / "model"
    save_model(model, tokenizer, out, META)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_writer(path):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model(model, tokenizer, out, {**META, "step": 99}, {"learned.bin": broken_writer})
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # untouched, kshot.json still the old one
    assert read_kshot_meta(out).get("step") is None


def test_a_failed_first_save_leaves_no_kshot_json(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    out = tmp_path / "fresh"

    def broken_writer(path):
        raise OSError("disk full")

    with pytest.raises(OSError):
        save_model(model, tokenizer, out, META, {"learned.bin": broken_writer})
    assert list(out.iterdir()) == []
    assert read_kshot_meta(out) is None


def test_load_model_with_other_labels_gets_a_fresh_head_and_keeps_the_body(tiny_model_dir):
    base = load_model(str(tiny_model_dir))
    assert model_label_names(base) == ["negative", "positive"]
    three = load_model(str(tiny_model_dir), ["a", "b", "c"])
    assert model_label_names(three) == ["a", "b", "c"]
    assert three.classifier.weight.shape[0] == 3
    assert torch.equal(three.bert.embeddings.word_embeddings.weight, base.bert.embeddings.word_embeddings.weight)


def test_loading_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match=f"Cannot load a model from the folder {tmp_path}"):
        load_model(str(tmp_path))
    with pytest.raises(ModelError):
        load_tokenizer(str(tmp_path))


def test_unreadable_kshot_json_is_a_model_error(tmp_path):
    (tmp_path / "kshot.json").write_text("{not json")
    with pytest.raises(ModelError, match="kshot.json is unreadable"):
        read_kshot_meta(tmp_path)
    assert read_kshot_meta(tmp_path / "elsewhere") is None


def test_default_model_resolves_to_the_bundled_minilm():
    path = resolve_model_name(None)
    assert path == resolve_model_name("default")
    config = json.loads((Path(path) / "config.json").read_text())
    assert config["hidden_size"] == 384 and config["num_hidden_layers"] == 6
    assert resolve_model_name("some-org/some-model") == "some-org/some-model"
