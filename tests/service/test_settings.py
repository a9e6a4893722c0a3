"""Service settings from KSHOT_* variables, and how requests may name data and models."""

from __future__ import annotations

from pathlib import Path

import pytest

from kshot.service import ServiceSettings
from kshot.service.references import InvalidReference, resolve_data, resolve_model


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KSHOT_ALLOWED_ROOTS", f"{tmp_path}/a:{tmp_path}/b")
    monkeypatch.setenv("KSHOT_DATASETS", f"arsc={tmp_path}/arsc,reviews={tmp_path}/r.json")
    monkeypatch.setenv("KSHOT_QUEUE_BACKEND", "redis")
    monkeypatch.setenv("KSHOT_WORKER_CONCURRENCY", "3")
    monkeypatch.setenv("KSHOT_TOKEN", "s3cret")
    settings = ServiceSettings()
    assert settings.allowed_roots == [tmp_path / "a", tmp_path / "b"]
    assert settings.datasets == {"arsc": f"{tmp_path}/arsc", "reviews": f"{tmp_path}/r.json"}
    assert settings.queue_backend == "redis" and settings.worker_concurrency == 3
    assert settings.token_value() == "s3cret" and "s3cret" not in repr(settings)


def test_an_empty_token_is_no_token(monkeypatch):
    monkeypatch.setenv("KSHOT_TOKEN", " ")
    assert ServiceSettings().token_value() is None


def test_invalid_settings_are_refused(monkeypatch):
    from pydantic import ValidationError

    monkeypatch.setenv("KSHOT_QUEUE_BACKEND", "rabbit")
    with pytest.raises(ValidationError, match="sqlite"):
        ServiceSettings()


@pytest.fixture()
def settings(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "r.json").write_text("{}")
    return ServiceSettings(
        allowed_roots=[tmp_path / "data"],
        output_root=tmp_path / "runs",
        datasets={"reviews": str(tmp_path / "data" / "r.json")},
        models={"mine": "/models/mine"},
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("default", "default"),
        ("mine", "/models/mine"),
        ("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
        ("google-bert/bert-base-uncased", "google-bert/bert-base-uncased"),
    ],
)
def test_models_by_registry_name_or_hub_id(settings, value, expected):
    assert resolve_model(value, settings, ("model",)) == expected


@pytest.mark.parametrize(
    "value",
    [
        "/etc",
        "../../etc/passwd",
        "~/secrets",
        "os.system('id')",
        "a/b/c",
        "a/../../b",
        "x;rm -rf /",
        "bert-base-uncased",
    ],
)
def test_models_outside_the_roots_or_not_a_name_are_refused(settings, value):
    with pytest.raises(InvalidReference) as info:
        resolve_model(value, settings, ("body", "model"))
    assert info.value.loc == ("body", "model") and value in info.value.message


def test_data_by_registry_name_path_or_hub_id(settings, tmp_path):
    data = {"format": "review_json", "path": "reviews"}
    resolve_data(data, settings, ("path",))
    assert data["path"] == str(tmp_path / "data" / "r.json")
    data = {"format": "review_json", "path": str(tmp_path / "data" / "." / "r.json")}
    resolve_data(data, settings, ("path",))
    assert data["path"] == str(tmp_path / "data" / "r.json")
    hub = {"format": "hf", "path": "SetFit/amazon_reviews"}
    resolve_data(hub, settings, ("path",))
    assert hub["path"] == "SetFit/amazon_reviews"
    # A folder of ARSC files is always a path, never a hub id.
    with pytest.raises(InvalidReference, match="outside the allowed roots"):
        resolve_data({"format": "arsc", "path": "some/arsc"}, settings, ("path",))
    assert Path(settings.output_root).name == "runs"
