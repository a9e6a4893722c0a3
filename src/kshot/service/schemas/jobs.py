"""Schemas of the jobs resource: requests to train and to test in the background."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ...errors import ConfigError
from .common import AttemptName

# Ids are 64-bit integers in every database the store supports.
AttemptId = Annotated[int, Field(ge=1, le=2**63 - 1)]

CONFIG_DOC = (
    "config.yaml as JSON: {data: {format, path, ...}, model: {name_or_path}, ...}. data.path and "
    "model.name_or_path are a registry name, a hub id or a path under the allowed roots; output_dir, "
    "data.cache_dir and logging.log_dir default to the attempt's folder under the output root."
)


def reject_non_finite(value: Any, where: str) -> None:
    # JSON readers accept NaN and Infinity; no setting means either, and a NaN learning rate would
    # pass every range check.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"'{where}' is {value}; give a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            reject_non_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            reject_non_finite(item, f"{where}[{i}]")


def check_config(raw: dict[str, Any]) -> dict[str, Any]:
    from ...config import KshotConfig

    reject_non_finite(raw, "config")
    try:
        KshotConfig.from_dict(raw)
    except ConfigError as err:
        raise ValueError(str(err)) from None
    return raw


def check_params(raw: dict[str, Any]) -> dict[str, Any]:
    from ...config import Params

    reject_non_finite(raw, "params")
    try:
        Params.from_dict(raw)
    except ConfigError as err:
        raise ValueError(str(err)) from None
    return raw


# Bodies checked by kshot's own config classes (unknown keys, wrong types, NaN) wherever they appear.
ConfigBody = Annotated[dict[str, Any], AfterValidator(check_config)]
ParamsBody = Annotated[dict[str, Any], AfterValidator(check_params)]


class TrainRequest(BaseModel):
    """Meta-train in the background; the attempt is returned at once, queued."""

    model_config = ConfigDict(extra="forbid")

    name: AttemptName | None = Field(None, description="Unique attempt name; default train-<time>-<random>.")
    config: ConfigBody = Field(default_factory=dict, description=CONFIG_DOC)
    params: ParamsBody = Field(default_factory=dict, description="params.yaml as JSON: algorithm and hyperparameters.")


class TestRequest(BaseModel):
    """Run the few-shot protocol on a model's test tasks in the background."""

    model_config = ConfigDict(extra="forbid")
    __test__ = False  # not a pytest class, despite its name

    name: AttemptName | None = Field(None, description="Unique attempt name; default test-<time>-<random>.")
    model: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Model folder under the allowed roots or the output root, or a model registry name.",
    )
    attempt: AttemptName | AttemptId | None = Field(
        None, description="Or: the name or id of a completed training attempt, whose model is tested."
    )
    config: ConfigBody = Field(
        default_factory=dict, description="config.yaml as JSON; its data section names the test tasks."
    )
    params: ParamsBody = Field(default_factory=dict, description='Param overrides, e.g. {"eval_inner_steps": 20}.')

    @model_validator(mode="after")
    def _one_model(self):
        if (self.model is None) == (self.attempt is None):
            raise ValueError(
                "give exactly one of 'model' (a folder or registry name) and 'attempt' (a training attempt)"
            )
        return self
