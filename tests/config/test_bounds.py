"""Every value of config and params is bounded: the web service validates request bodies with these classes."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from kshot.config import DataConfig, KshotConfig, LoggingConfig, ModelConfig, Params
from kshot.config.base import MAX_ITEMS, MAX_STRING, ConfigSection, Range
from kshot.errors import ConfigError, shown

SECTIONS = [DataConfig, ModelConfig, LoggingConfig, KshotConfig, Params]
# Where a section sits in a request body, and the body that holds a value there.
WRAP = {DataConfig: lambda d: KshotConfig.from_dict({"data": d}), Params: Params.from_dict}
PREFIX = {DataConfig: "data.", Params: ""}

# The bounds the worker relies on; a change here is a change of what the service accepts.
EXPECTED = {
    (Params, "seed"): (0, 2**32 - 1),
    (Params, "new_class_head_scale"): (0, 1000),
    (DataConfig, "eval_way"): (2, 10_000),
    (DataConfig, "eval_shots"): (1, 10_000),
    (DataConfig, "eval_queries"): (1, 10_000),
    (Params, "meta_steps"): (1, 10_000_000),
    (Params, "meta_batch_size"): (1, 1024),
    (Params, "n_way"): (2, 1000),
    (Params, "k_support"): (1, 10_000),
    (Params, "k_query"): (0, 10_000),
    (Params, "inner_steps"): (0, 1000),
    (Params, "inner_batch_size"): (1, 4096),
    (Params, "inner_lr"): (0, 10),
    (Params, "outer_lr"): (0, 10),
    (Params, "meta_lr"): (0, 10),
    (Params, "second_order_steps"): (0, 1000),
    (Params, "anil_prototype_scale"): (0, 1000),
    (Params, "metasgd_init_lr"): (0, 10),
    (Params, "metasgd_lr_lr"): (0, 10),
    (Params, "max_grad_norm"): (0, 1_000_000),
    (Params, "eval_every"): (0, 10_000_000),
    (Params, "eval_tasks"): (1, 100_000),
    (Params, "eval_inner_steps"): (0, 1000),
    (Params, "eval_batch_size"): (1, 4096),
    (Params, "checkpoint_every"): (0, 10_000_000),
    (Params, "max_length"): (1, 512),
    (Params, "dropout"): (0, 1),
    (Params, "attention_dropout"): (0, 1),
    (Params, "cosine_scale"): (0, 1000),
    (Params, "metric_lr"): (0, 10),
    (Params, "scorer_lr"): (0, 10),
    (Params, "scorer_hidden"): (1, 4096),
    (Params, "siamese_neighbors"): (1, 10_000),
    (Params, "lopt_hidden"): (1, 1024),
    (Params, "lopt_lr"): (0, 10),
    (Params, "lopt_max_step"): (0, 10),
    (Params, "lopt_truncate"): (1, 1000),
    (Params, "lopt_checkpoint_segment"): (0, 1000),
    (Params, "lopt_path_loss_weight"): (0, 1000),
    (Params, "lopt_meta_grad_clip"): (0, 1_000_000),
    (DataConfig, "eval_episodes"): (1, 100_000),
    (DataConfig, "eval_query_size"): (1, 1_000_000),
}


def _is_numeric(tp) -> bool:
    if tp in (int, float):
        return True
    return any(a in (int, float) for a in typing.get_args(tp))


def _numeric_fields():
    for section in SECTIONS:
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            if _is_numeric(hints[f.name]):
                yield section, f.name


def _is_int(section, key) -> bool:
    tp = typing.get_type_hints(section)[key]
    return tp is int or int in typing.get_args(tp)


def _build(section, key, value):
    return WRAP[section]({key: value})


def _cases():
    return [pytest.param(section, key, id=f"{section.__name__}.{key}") for section, key in EXPECTED]


def test_every_numeric_field_has_a_range_stated_in_its_help_text():
    fields = set(_numeric_fields())
    assert fields == set(EXPECTED), "a numeric field without a bound, or a bound not in EXPECTED"
    for section, key in fields:
        bounds = section.ranges()[key]
        assert (bounds.low, bounds.high) == EXPECTED[section, key], key
        assert f"({bounds.text()}" in section.help()[key], key


@pytest.mark.parametrize(("section", "key"), _cases())
def test_the_bounds_are_accepted_and_values_beyond_them_refused_naming_the_key(section, key):
    bounds = section.ranges()[key]
    path = f"'{PREFIX[section]}{key}'"
    if _is_int(section, key):
        inside = [bounds.low + bounds.low_open, bounds.high - bounds.high_open]
        outside = [bounds.low - (not bounds.low_open), bounds.high + (not bounds.high_open)]
    else:
        inside = [float(bounds.high)] if not bounds.high_open else [math.nextafter(bounds.high, -math.inf)]
        inside.append(math.nextafter(bounds.low, math.inf) if bounds.low_open else float(bounds.low))
        outside = [math.nextafter(bounds.high, math.inf) if not bounds.high_open else float(bounds.high)]
        outside.append(float(bounds.low) if bounds.low_open else math.nextafter(bounds.low, -math.inf))
    for value in inside:
        obj = _build(section, key, value)
        assert getattr(obj.data if section is DataConfig else obj, key) == value
    for value in outside:
        with pytest.raises(ConfigError) as err:
            _build(section, key, value)
        message = str(err.value)
        assert path in message and bounds.describe() in message, message


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("meta_steps", 2**63, "10,000,000"),
        ("k_support", 10**9, "10,000"),
        ("eval_tasks", 10**9, "100,000"),
        ("inner_lr", 1e308, "at most 10"),
        ("seed", 2**32, "4,294,967,295"),
        ("n_way", 1001, "1,000"),
        ("lopt_hidden", 1025, "1,024"),
    ],
)
def test_the_reported_oversized_values_are_refused(key, value, bound):
    with pytest.raises(ConfigError, match=f"'{key}' must be .*{bound}"):
        Params.from_dict({key: value})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "key", [k for (s, k) in EXPECTED if s is Params and not _is_int(Params, k)] + ["data.eval_query_size"]
)
def test_non_finite_floats_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"'{key}' must be"):
        if key.startswith("data."):
            KshotConfig.from_dict({"data": {key.split(".")[1]: value}})
        else:
            Params.from_dict({key: value})


def test_nan_does_not_slip_through_a_range():
    assert math.nan not in Range(0, 10)
    assert math.inf not in Range(0, math.inf)


def test_an_int_beyond_the_float_range_is_refused():
    with pytest.raises(ConfigError, match="'inner_lr' must be a finite number"):
        Params.from_dict({"inner_lr": 10**400})


def test_a_huge_int_is_refused_with_a_short_message():
    with pytest.raises(ConfigError) as err:
        Params.from_dict({"seed": 10**10_000})  # its repr would be refused by Python itself
    assert "'seed'" in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize(
    "build",
    [
        lambda s: Params.from_dict({"lopt_path": s}),
        lambda s: Params.from_dict({"algorithm": s}),
        lambda s: Params.from_dict({"inner_optimizer": s}),
        lambda s: KshotConfig.from_dict({"output_dir": s}),
        lambda s: KshotConfig.from_dict({"data": {"path": s}}),
        lambda s: KshotConfig.from_dict({"data": {"test_domains": [s]}}),
        lambda s: KshotConfig.from_dict({"model": {"name_or_path": s}}),
        lambda s: KshotConfig.from_dict({"logging": {"level": s}}),
        lambda s: KshotConfig.from_dict({"data": s}),
        lambda s: Params.from_dict({"meta_steps": s}),
    ],
    ids=[
        "lopt_path",
        "algorithm",
        "literal",
        "output_dir",
        "data.path",
        "list item",
        "model",
        "logging.level",
        "section",
        "int field",
    ],
)
def test_a_1mb_string_is_refused_with_a_short_message(build):
    with pytest.raises(ConfigError) as err:
        build("x" * 1_000_000)
    assert len(str(err.value)) < 300, str(err.value)[:400]


def test_a_1mb_unknown_key_is_cut_in_the_message():
    with pytest.raises(ConfigError) as err:
        Params.from_dict({"x" * 1_000_000: 1})
    message = str(err.value)
    # The message ends with the list of valid keys: long, but fixed whatever the input.
    valid = ", ".join(f.name for f in dataclasses.fields(Params))
    assert message.endswith(f"Valid keys: {valid}.") and len(message) - len(valid) < 300


def test_strings_up_to_the_limit_are_accepted():
    assert KshotConfig.from_dict({"output_dir": "x" * MAX_STRING}).output_dir == "x" * MAX_STRING
    with pytest.raises(ConfigError, match=f"'output_dir' is a string of {MAX_STRING + 1:,} characters"):
        KshotConfig.from_dict({"output_dir": "x" * (MAX_STRING + 1)})


@pytest.mark.parametrize("key", ["train_domains", "validation_domains", "test_domains", "label_names"])
def test_a_20k_item_list_is_refused_with_a_short_message(key):
    with pytest.raises(ConfigError) as err:
        KshotConfig.from_dict({"data": {key: [f"d{i}" for i in range(20_000)]}})
    message = str(err.value)
    assert f"'data.{key}' is a list of 20,000 items" in message and len(message) < 300


def test_lists_up_to_the_limit_are_accepted():
    domains = [f"d{i}" for i in range(MAX_ITEMS)]
    assert KshotConfig.from_dict({"data": {"train_domains": domains}}).data.train_domains == domains


def test_wrong_type_messages_cut_a_long_value():
    with pytest.raises(ConfigError) as err:
        KshotConfig.from_dict({"data": {"test_domains": list(range(5000))}})
    assert "'data.test_domains' must be list of str or null" in str(err.value) and len(str(err.value)) < 300


def test_shown_cuts_and_says_how_long_the_value_was():
    assert shown("reptil") == "'reptil'"
    assert shown(["books", 3]) == "['books', 3]"
    long = shown("x" * 1_000_000)
    assert len(long) < 120 and long.endswith("… (1,000,000 characters)")
    assert shown(list(range(20_000))).endswith("… (20,000 items)")
    assert len(shown("y" * 500, limit=20)) < 50


def test_section_validate_checks_ranges_when_called_directly():
    params = Params(meta_steps=10**12)
    with pytest.raises(ConfigError, match="'params.meta_steps'"):
        params.validate("params.")
    assert issubclass(Params, ConfigSection)
