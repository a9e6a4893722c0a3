"""Config validation: every mistake in a YAML file or an override is an error naming the key."""

from __future__ import annotations

import pytest

from kshot.config import KshotConfig, Params, apply_overrides, dump_yaml, load_config, load_params, load_yaml
from kshot.errors import ConfigError


def test_unknown_params_key_names_the_key_and_the_closest_one():
    with pytest.raises(ConfigError) as err:
        Params.from_dict({"inner_lrr": 1e-4})
    message = str(err.value)
    assert "'inner_lrr'" in message
    assert "Did you mean 'inner_lr'?" in message


def test_unknown_nested_key_names_its_full_path():
    with pytest.raises(ConfigError) as err:
        KshotConfig.from_dict({"data": {"pth": "x"}})
    message = str(err.value)
    assert "'data.pth'" in message
    assert "Did you mean 'path'?" in message
    assert "Valid keys in data:" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("meta_steps", "ten", "'meta_steps' must be an integer"),
        ("meta_steps", 2.5, "'meta_steps' must be an integer"),
        ("meta_steps", True, "'meta_steps' must be an integer"),
        ("inner_lr", "fast", "'inner_lr' must be a number"),
        ("test_after_train", "yes", "'test_after_train' must be true or false"),
        ("n_way", "two", "'n_way' must be"),
    ],
)
def test_wrong_type_names_the_key(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        Params.from_dict({key: value})


def test_wrong_type_in_a_nested_list_names_the_key():
    with pytest.raises(ConfigError, match=r"'data.test_domains' must be list of str or null, got \['books', 3\]"):
        KshotConfig.from_dict({"data": {"test_domains": ["books", 3]}})


def test_section_that_is_not_a_mapping_is_an_error():
    with pytest.raises(ConfigError, match="'data' must be a mapping"):
        KshotConfig.from_dict({"data": "arsc"})


def test_integers_widen_to_floats():
    params = Params.from_dict({"outer_lr": 1})
    assert params.outer_lr == 1.0 and isinstance(params.outer_lr, float)


def test_bad_literal_lists_the_choices_and_the_closest_one():
    with pytest.raises(ConfigError) as err:
        Params.from_dict({"inner_optimizer": "adma"})
    message = str(err.value)
    assert "'inner_optimizer'" in message and "sgd, adam" in message
    assert "Did you mean 'adam'?" in message


def test_bad_nested_literal():
    with pytest.raises(ConfigError, match="'data.format' must be one of arsc, review_json, hf"):
        KshotConfig.from_dict({"data": {"format": "csv"}})


def test_unknown_algorithm_suggests_the_closest():
    with pytest.raises(ConfigError, match="Unknown algorithm 'reptil'. Did you mean 'reptile'?"):
        Params.from_dict({"algorithm": "reptil"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("meta_steps", 0),
        ("k_support", 0),
        ("inner_steps", -1),
        ("inner_lr", -1.0),
        ("max_length", 1024),
        ("n_way", 1),
        ("anil_prototype_scale", 0.0),
        ("dropout", 1.0),
        ("dropout", -0.1),
    ],
)
def test_out_of_range_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        Params.from_dict({key: value})


def test_test_domain_also_listed_for_training_is_a_config_error():
    with pytest.raises(ConfigError, match="books"):
        KshotConfig.from_dict({"data": {"train_domains": ["books", "dvd"], "test_domains": ["books"]}})
    with pytest.raises(ConfigError, match="dvd"):
        KshotConfig.from_dict({"data": {"validation_domains": ["dvd"], "test_domains": ["dvd"]}})


def test_round_trip_to_dict_from_dict_is_lossless():
    config = KshotConfig.from_dict(
        {
            "data": {
                "format": "hf",
                "path": "x.csv",
                "text_column": "review",
                "label_names": ["b", "a"],
                "test_domains": ["t"],
            },
            "model": {"name_or_path": "some/model", "revision": "v1"},
            "output_dir": "out",
            "logging": {"level": "DEBUG", "progress_bar": False},
        }
    )
    params = Params.from_dict(
        {"inner_lr": 3e-4, "n_way": 2, "outer_optimizer": "adam", "max_grad_norm": None, "seed": 7}
    )
    assert KshotConfig.from_dict(config.to_dict()) == config
    assert Params.from_dict(params.to_dict()) == params
    assert config.to_dict()["data"]["label_names"] == ["b", "a"]
    assert params.to_dict()["max_grad_norm"] is None


def test_round_trip_through_yaml_files(tmp_path):
    params = Params.from_dict({"inner_lr": 1e-4, "k_support": 3, "support_sampling": "total"})
    config = KshotConfig.from_dict({"data": {"validation_domains": ["a", "b"]}})
    dump_yaml(params.to_dict(), tmp_path / "params.yaml")
    dump_yaml(config.to_dict(), tmp_path / "sub" / "config.yaml")
    assert load_params(tmp_path / "params.yaml") == params
    assert load_config(tmp_path / "sub" / "config.yaml") == config
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["config.yaml"]  # no temporary file left


def test_set_parses_scientific_notation_as_float():
    config, params = {}, {"inner_lr": 5e-5}
    apply_overrides(config, params, ["params.inner_lr=1e-4", "params.meta_steps=3", "params.outer_lr=.5"])
    assert params == {"inner_lr": 1e-4, "meta_steps": 3, "outer_lr": 0.5}
    assert isinstance(params["inner_lr"], float) and isinstance(params["meta_steps"], int)
    assert Params.from_dict(params).inner_lr == 1e-4


def test_an_unquoted_no_is_the_choice_no_not_a_boolean(tmp_path):
    # YAML 1.1 reads `no` as false: `--set params.mixed_precision=no` and `mixed_precision: no` mean the choice.
    params = {}
    apply_overrides({}, params, ["params.mixed_precision=no"])
    assert params == {"mixed_precision": False} and Params.from_dict(params).mixed_precision == "no"
    (tmp_path / "params.yaml").write_text("mixed_precision: no\n")
    assert load_params(tmp_path / "params.yaml").mixed_precision == "no"
    with pytest.raises(ConfigError, match="must be one of auto, no, bf16, fp16, got True"):
        Params.from_dict({"mixed_precision": True})  # no choice is 'yes': a boolean stays an error


def test_set_overrides_nested_config_keys_and_keeps_siblings():
    config = {"data": {"format": "arsc", "path": "a"}}
    apply_overrides(
        config,
        {},
        [
            "config.data.path=/data/arsc",
            "config.data.test_domains=[books, dvd]",
            "config.model.name_or_path=null",
            "config.logging.progress_bar=false",
        ],
    )
    assert config == {
        "data": {"format": "arsc", "path": "/data/arsc", "test_domains": ["books", "dvd"]},
        "model": {"name_or_path": None},
        "logging": {"progress_bar": False},
    }
    parsed = KshotConfig.from_dict(config)
    assert parsed.data.path == "/data/arsc" and parsed.data.test_domains == ["books", "dvd"]
    assert parsed.logging.progress_bar is False


def test_set_value_may_contain_equals_signs():
    config = {}
    apply_overrides(config, {}, ["config.output_dir=runs/a=b"])
    assert config == {"output_dir": "runs/a=b"}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("params.inner_lr", "must look like section.key=value"),
        ("inner_lr=1e-4", "must start with 'config.' or 'params.'"),
        ("model.name_or_path=x", "must start with 'config.' or 'params.'"),
        ("params.inner_lr=[1", "cannot read the value"),
    ],
)
def test_bad_override_is_a_config_error(item, expected):
    with pytest.raises(ConfigError, match=expected):
        apply_overrides({}, {}, [item])


def test_override_into_a_value_that_is_not_a_section():
    with pytest.raises(ConfigError, match="'output_dir' is not a section"):
        apply_overrides({"output_dir": "x"}, {}, ["config.output_dir.sub=1"])


def test_overridden_unknown_key_is_still_rejected():
    params = {}
    apply_overrides({}, params, ["params.inner_lrr=1e-4"])
    with pytest.raises(ConfigError, match="Did you mean 'inner_lr'"):
        Params.from_dict(params)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("inner_lr: [1e-4\nmeta_steps: 3\n")
    with pytest.raises(ConfigError, match="params.yaml is not valid YAML"):
        load_yaml(path)


def test_yaml_that_is_not_a_mapping_is_an_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read .*nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def test_empty_yaml_gives_the_defaults(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# nothing set\n")
    assert load_params(path) == Params()


def test_errors_from_a_file_name_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("meta_steps: many\n")
    with pytest.raises(ConfigError, match=r"params.yaml: 'meta_steps' must be an integer, got 'many'"):
        load_params(path)


def test_shipped_arsc_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs" / "arsc"
    config = load_config(root / "config.yaml")
    params = load_params(root / "params.yaml")
    assert config.data.format == "arsc" and params.algorithm == "reptile"
