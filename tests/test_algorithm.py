"""The algorithm registry, entry-point discovery and typed config overrides."""

from __future__ import annotations

import sys
import textwrap

import pytest

import marlbench.algorithm as registry
from marlbench.algorithm import (
    apply_overrides,
    get_algorithm,
    load_yaml_overrides,
    parse_set_pairs,
    problem_kinds,
    resolve_config,
)
from marlbench.benchmark import variant_name
from marlbench.errors import ConfigError, UnknownNameError
from marlbench.spec import EnvSpec


def test_bc_is_discovered_from_the_algorithms_package():
    cls = get_algorithm("bc")
    assert cls.__module__ == "algorithms.bc"
    assert set(cls.action_types) == {"discrete", "continuous"}


def test_unknown_algorithm_suggests_the_closest_name():
    with pytest.raises(UnknownNameError, match="did you mean 'bc'"):
        get_algorithm("bcc")


def test_an_outside_package_adds_an_algorithm_through_its_entry_point(tmp_path, monkeypatch):
    package = tmp_path / "site"
    (package / "my_marl").mkdir(parents=True)
    (package / "my_marl" / "__init__.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            import torch
            from marlbench.algorithm import Algorithm, AlgorithmConfig

            @dataclass
            class RandomConfig(AlgorithmConfig):
                batch_size: int = 8

            class RandomPolicy(Algorithm):
                name = "my-random"
                title = "uniform random actions"
                Config = RandomConfig

                def update(self, batch, step):
                    return {}

                def act(self, obs, avail, deterministic=True):
                    return torch.zeros(obs.shape[:2], dtype=torch.int64)
            """
        )
    )
    dist_info = package / "my_marl-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-marl\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[marlbench.algorithms]\nmy-random = my_marl:RandomPolicy\n")
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.setattr(registry, "_discovered", False)
    try:
        cls = get_algorithm("my-random")
        assert cls.__module__ == "my_marl" and cls.display_name == "my-random"
        assert "bc" in registry.all_algorithms()
    finally:
        registry._ALGORITHMS.pop("my-random", None)
        sys.modules.pop("my_marl", None)


def test_set_pairs_are_read_as_yaml_values():
    parsed = parse_set_pairs(["learning_rate=3e-4", "hidden=[64, 64]", "shared_parameters=false", "batch_size=32"])
    assert parsed == {"learning_rate": 3e-4, "hidden": [64, 64], "shared_parameters": False, "batch_size": 32}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_pairs(["learning_rate"])


def test_overrides_are_type_checked_and_named():
    config = get_algorithm("bc").Config()
    updated = apply_overrides(config, {"hidden": [64, 64], "learning_rate": 1}, "bc")
    assert updated.hidden == (64, 64) and updated.learning_rate == 1.0 and isinstance(updated.learning_rate, float)
    with pytest.raises(ConfigError, match="field 'batch_size': expected an integer, found 'big'"):
        apply_overrides(config, {"batch_size": "big"}, "bc")
    with pytest.raises(ConfigError, match="field 'shared_parameters': expected true or false"):
        apply_overrides(config, {"shared_parameters": 1}, "bc")
    with pytest.raises(UnknownNameError, match="did you mean 'learning_rate'"):
        apply_overrides(config, {"learning_rat": 0.1}, "bc")


def test_dataset_table_applies_before_user_overrides(monkeypatch):
    cls = get_algorithm("bc")
    monkeypatch.setattr(cls, "dataset_overrides", {"matrix/xor/*": {"learning_rate": 0.5, "batch_size": 16}})
    config = resolve_config(cls, "matrix", "xor", "ab", {"batch_size": 8})
    assert config.learning_rate == 0.5 and config.batch_size == 8
    assert resolve_config(cls, "matrix", "mne", "biased").learning_rate == cls.Config().learning_rate


def test_settings_attach_to_the_kind_of_problem_not_to_the_suite_name(monkeypatch):
    cls = get_algorithm("bc")
    monkeypatch.setattr(cls, "problem_overrides", {"one-step": {"learning_rate": 0.5}, "continuous": {"batch_size": 4}})
    one_step = EnvSpec(n_agents=3, obs_dim=1, state_dim=1, action_type="discrete", n_actions=3, episode_limit=1)
    episodic = EnvSpec(n_agents=3, obs_dim=1, state_dim=1, action_type="discrete", n_actions=3, episode_limit=50)
    assert problem_kinds(one_step) == ("discrete", "one-step")
    assert resolve_config(cls, "someone-elses-games", "g", "q", spec=one_step).learning_rate == 0.5
    assert resolve_config(cls, "matrix", "g", "q", spec=episodic).learning_rate == cls.Config().learning_rate
    # the dataset table and the user's overrides come later and win
    monkeypatch.setattr(cls, "dataset_overrides", {"*/g/q": {"learning_rate": 0.25}})
    assert resolve_config(cls, "own", "g", "q", spec=one_step).learning_rate == 0.25
    assert resolve_config(cls, "own", "g", "q", {"learning_rate": 0.125}, spec=one_step).learning_rate == 0.125


def test_yaml_overrides_and_variant_names(tmp_path):
    path = tmp_path / "bc.yaml"
    path.write_text("learning_rate: 0.0003\nhidden: [32, 32]\n")
    overrides = load_yaml_overrides(path)
    assert overrides == {"learning_rate": 0.0003, "hidden": [32, 32]}
    assert variant_name({}) == "default"
    assert variant_name(overrides) == "hidden=[32,32],learning_rate=0.0003"
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping"):
        load_yaml_overrides(tmp_path / "bad.yaml")
