"""Run-relative schedules: every phase boundary and schedule end point of a multi-phase
algorithm falls at the same fraction of the run, whatever the run's length."""

from __future__ import annotations

import json

import pytest
import torch

from marlbench.algorithm import get_algorithm, resolve_config
from marlbench.errors import ConfigError
from marlbench.spec import EnvSpec
from marlbench.suites import get_suite
from marlbench.train import train

DISCRETE = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, action_type="discrete", n_actions=2, episode_limit=1)
CONTINUOUS = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, action_type="continuous", action_dim=1, episode_limit=1)
# The run lengths a user meets: each suite's profiles, and `--steps N`.
RUN_LENGTHS = sorted(
    {profile.steps for suite in ("matrix", "mamujoco") for profile in get_suite(suite).profiles.values()}
    | {777, 12_345}
)
INSTANCES = {
    "alberdice": ("matrix", "xor", "aa-ab-ba"),
    "inspo": ("matrix", "xor", "aa-ab-ba"),
    "omsd": ("mamujoco", "hopper", "medium"),
}


def _phases(algo: str, total_steps: int, overrides: dict | None = None):
    cls = get_algorithm(algo)
    spec = CONTINUOUS if algo == "omsd" else DISCRETE
    config = resolve_config(cls, *INSTANCES[algo], overrides or {}, total_steps=total_steps, spec=spec)
    return config, cls(spec, config, torch.device("cpu")).phase_starts()


@pytest.mark.parametrize("total", RUN_LENGTHS)
@pytest.mark.parametrize(("algo", "fraction"), [("alberdice", 0.1), ("inspo", 0.1), ("omsd", 2 / 3)])
def test_the_policy_phase_starts_at_the_same_fraction_of_every_run(algo, fraction, total):
    config, starts = _phases(algo, total)
    second = sorted(starts.values())[1]
    assert len(starts) == 2 and sorted(starts.values())[0] == 1
    assert config.pretrain_steps == second - 1
    assert abs(config.pretrain_steps - fraction * total) <= 0.5 or (total * fraction < 1 and config.pretrain_steps == 1)
    assert 1 <= config.pretrain_steps < total


@pytest.mark.parametrize("total", RUN_LENGTHS)
def test_alberdice_anneals_alpha_over_the_whole_run(total):
    from algorithms.alberdice import annealed_alpha

    config, _ = _phases("alberdice", total)
    assert config.anneal_steps == total
    assert annealed_alpha(total, config) == pytest.approx(config.alpha_end)
    assert annealed_alpha(config.pretrain_steps + 1, config) == pytest.approx(config.alpha_start)


@pytest.mark.parametrize("total", RUN_LENGTHS)
def test_inspo_beta_halves_every_twentieth_of_the_run(total):
    from algorithms.inspo import decayed_beta

    config, _ = _phases("inspo", total)
    assert config.beta_half_life == max(1, round(0.05 * total))
    end = decayed_beta(total, config) / config.beta_start
    assert end == pytest.approx(0.5 ** ((total - config.pretrain_steps - 1) / config.beta_half_life))


def test_explicit_lengths_are_kept_as_set():
    config, starts = _phases("alberdice", 5000, {"pretrain_steps": 300, "anneal_steps": 4000})
    assert (config.pretrain_steps, config.anneal_steps, starts["best_responses"]) == (300, 4000, 301)
    config, _ = _phases("inspo", 5000, {"beta_half_life": 7})
    assert config.beta_half_life == 7


def test_an_unresolved_config_is_refused_with_a_reason():
    cls = get_algorithm("alberdice")
    with pytest.raises(ConfigError, match="depend on the run's length"):
        cls(DISCRETE, cls.Config(), torch.device("cpu"))


def test_a_fraction_outside_zero_one_is_refused():
    with pytest.raises(ConfigError, match="pretrain_fraction"):
        _phases("inspo", 1000, {"pretrain_fraction": 1.5})


@pytest.mark.parametrize("steps", [None, 300])
def test_config_json_records_the_resolved_lengths_and_metrics_name_each_phase(make_request, steps):
    outcome = train(make_request(algo="alberdice", task="xor", quality="ab", profile="smoke", steps=steps))
    total = steps or get_suite("matrix").profile("smoke").steps
    recorded = json.loads((outcome.run_dir / "config.json").read_text())["algorithm_config"]
    assert (recorded["pretrain_steps"], recorded["anneal_steps"]) == (round(0.1 * total), total)
    lines = [json.loads(line) for line in (outcome.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_lines = [line for line in lines if line["kind"] == "train"]
    assert [line["phase"] for line in train_lines if line["step"] == recorded["pretrain_steps"]] == [
        "behaviour_pretraining"
    ]
    assert train_lines[-1]["phase"] == "best_responses"
