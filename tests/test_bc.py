"""BC learns the behaviour policy: the papers' matrix-game numbers for BC, and a continuous target."""

from __future__ import annotations

import numpy as np
import pytest

from marlbench.data.episodes import pack_episodes
from marlbench.data.store import write_dataset
from marlbench.suites.matrix.games import BANDIT_SPEC
from marlbench.train import train


def _final(make_request, **kwargs) -> dict:
    outcome = train(make_request(algo="bc", **kwargs))
    assert outcome.result["status"] == "completed"
    return outcome.result["final"]


def test_bc_on_xor_ab_ba_learns_the_mixed_marginals(make_request):
    final = _final(make_request, task="xor", quality="ab-ba")
    probs = final["joint_action_probs"]
    first_agent_a = probs["AA"] + probs["AB"]
    second_agent_a = probs["AA"] + probs["BA"]
    assert first_agent_a == pytest.approx(0.5, abs=0.06)
    assert second_agent_a == pytest.approx(0.5, abs=0.06)
    assert final["expected_return"] == pytest.approx(0.0, abs=0.08)


def test_bc_on_xor_aa_ab_ba_matches_inspo_table_1(make_request):
    """InSPO Table 1 reports BC at 0.23 +- 0.01 on {AA, AB, BA}; the exact marginal value is 2/9."""
    scores = [_final(make_request, task="xor", quality="aa-ab-ba", seed=seed)["expected_return"] for seed in (0, 1)]
    assert np.mean(scores) == pytest.approx(2 / 9, abs=0.03)


def test_bc_on_mne_biased_picks_a_a(make_request):
    final = _final(make_request, task="mne", quality="biased")
    assert final["return_mean"] == 5.0
    probs = final["joint_action_probs"]
    assert max(probs, key=probs.get) == "AA"
    assert probs["AA"] == pytest.approx(0.64, abs=0.06)


def test_continuous_bc_reproduces_a_fixed_behaviour(make_request, tmp_path):
    """Data where agent 0 always plays 0.6 and agent 1 plays -0.4: BC's deterministic actions
    must land there, so the bandit pays about 0.6 * -0.4 = -0.24."""
    episodes = 512
    actions = np.broadcast_to(np.array([0.6, -0.4], dtype=np.float32)[None, None, :, None], (episodes, 1, 2, 1))
    fields = pack_episodes(
        obs=np.ones((episodes, 2, 2, 1), np.float32),
        state=np.ones((episodes, 2, 1), np.float32),
        actions=actions.copy(),
        reward=np.full((episodes, 1), -0.24, np.float32),
        terminated=np.ones(episodes, bool),
    )
    root = tmp_path / "fixed-bandit"
    write_dataset(root, fields, spec=BANDIT_SPEC, suite="matrix", task="bandit", quality="gmm", source={"test": True})
    final = _final(make_request, task="bandit", quality="gmm", dataset_path=root)
    assert final["return_mean"] == pytest.approx(-0.24, abs=0.03)
