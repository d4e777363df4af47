"""One-step games: the n-agent payoff game, its datasets from joint-action counts, and OMSD's bandit.

A :class:`PayoffGame` is any cooperative one-step game with discrete actions: an
n-dimensional payoff array, one axis per agent (every axis as long as the number of
actions), whose entry ``payoff[a_1, ..., a_n]`` is the team reward of that joint action.
Its spec has ``episode_limit=1``; :class:`PayoffGameEnv` plays it; :func:`joint_action_fields`
builds a dataset holding ``counts[a]`` episodes of every joint action ``a`` (the counts an
array shaped like the payoff or a mapping joint action -> count); :class:`PayoffTask` names
a game's datasets by quality. A suite of one's own one-step games needs only these
(``tests/plugins/own_games`` is one, registered from outside marlbench).

The matrix suite's games are instances (REFERENCE.md, "Matrix and bandit games"):

- ``xor``: penalty XOR, two agents, actions {A, B}; r(A,A)=0, r(A,B)=r(B,A)=1, r(B,B)=-2.
  Qualities name the joint actions in the data: ``ab-ba`` holds (A,B) and (B,A) in equal
  shares (ComaDICE's datasets (a)-(d), InSPO's (a)-(c)).
- ``mne``: the multi-equilibrium game of InSPO, actions {A, B, C}; r(A,A)=5, r(B,B)=10,
  r(C,C)=20. The paper gives no off-diagonal payoffs; we use 0 (our choice). ``uniform``
  comes from the behaviour mu(A)=mu(B)=mu(C)=1/3 per agent and ``biased`` from mu(A)=0.8,
  mu(B)=mu(C)=0.1; the joint counts are the exact products of the marginals.

``bandit`` is OMSD's two-agent continuous bandit, one action in [-1, 1] per agent. The
paper gives no reward formula; r(a) = a1 * a2 is ours: it is maximal (1) at (1, 1) and
(-1, -1) and -1 at the miscoordinated corners, which fits every published number. Its data
draws joint actions from OMSD's two-Gaussian mixture.

Every one-step game gives each agent the constant observation [1] (the agent id is added
by the networks) and the constant state [1].
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from marlbench.data.episodes import pack_episodes
from marlbench.envs.base import Observation, StepResult, VecEnv
from marlbench.spec import EnvSpec

JointActionCounts = np.ndarray | Mapping[tuple[int, ...], int]
"""Episodes per joint action: an integer array shaped like the payoff, or ``{(a_1, ..., a_n): count}``."""


# --- one-step episodes -------------------------------------------------------------------


def one_step_fields(spec: EnvSpec, actions: np.ndarray, reward: np.ndarray) -> dict[str, np.ndarray]:
    """Store fields of one-step episodes: joint ``actions [E, N]`` (or ``[E, N, A]``) and their rewards ``[E]``."""
    episodes = actions.shape[0]
    avail = np.ones((episodes, 2, spec.n_agents, spec.n_actions), dtype=bool) if spec.discrete else None
    return pack_episodes(
        obs=np.ones((episodes, 2, spec.n_agents, spec.obs_dim), dtype=np.float32),
        state=np.ones((episodes, 2, spec.state_dim), dtype=np.float32),
        actions=actions[:, None],
        reward=reward[:, None].astype(np.float32),
        terminated=np.ones(episodes, dtype=bool),
        avail=avail,
    )


class OneStepEnv(VecEnv):
    """Shared reset/step bookkeeping of the one-step games: constant observations, done after one step."""

    def __init__(self, spec: EnvSpec, n_envs: int):
        super().__init__(n_envs)
        self.spec = spec
        self._done = np.zeros(n_envs, dtype=bool)

    def _observation(self) -> Observation:
        obs = np.ones((self.n_envs, self.spec.n_agents, 1), dtype=np.float32)
        state = np.ones((self.n_envs, 1), dtype=np.float32)
        avail = (
            np.ones((self.n_envs, self.spec.n_agents, self.spec.n_actions), dtype=bool) if self.spec.discrete else None
        )
        return obs, state, avail

    def reset(self, seed: int) -> Observation:
        self._done[:] = False
        return self._observation()

    def _team_reward(self, actions: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def step(self, actions: np.ndarray) -> StepResult:
        reward = np.where(self._done, 0.0, self._team_reward(actions)).astype(np.float32)
        self._done[:] = True
        obs, state, avail = self._observation()
        return obs, state, avail, reward, self._done.copy(), {}


# --- payoff games ------------------------------------------------------------------------


class PayoffGame:
    """A one-step cooperative game of ``payoff.ndim`` agents with ``payoff.shape[0]`` actions each;
    ``payoff[a_1, ..., a_n]`` is the team reward of the joint action."""

    def __init__(self, payoff: np.ndarray | list):
        payoff = np.array(payoff, dtype=np.float32)
        if payoff.ndim < 1 or payoff.size == 0 or len(set(payoff.shape)) != 1:
            raise ValueError(
                "a payoff needs one axis per agent, every axis as long as the number of actions, "
                f"got shape {list(payoff.shape)}"
            )
        if not np.isfinite(payoff).all():
            raise ValueError("a payoff must be finite")
        payoff.flags.writeable = False
        self.payoff = payoff
        self.spec = EnvSpec(
            n_agents=payoff.ndim,
            obs_dim=1,
            state_dim=1,
            action_type="discrete",
            n_actions=payoff.shape[0],
            episode_limit=1,
        )

    def reference_returns(self) -> dict[str, float]:
        """The normalisation references a dataset card records: the payoff range."""
        return {"min": float(self.payoff.min()), "max": float(self.payoff.max())}


class PayoffGameEnv(OneStepEnv):
    """B episodes of a payoff game: joint actions ``[B, N]`` in, the payoff of each out."""

    def __init__(self, game: PayoffGame | np.ndarray, n_envs: int):
        self.game = game if isinstance(game, PayoffGame) else PayoffGame(game)
        super().__init__(self.game.spec, n_envs)

    @property
    def payoff(self) -> np.ndarray:
        return self.game.payoff

    def _team_reward(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.n_envs, self.spec.n_agents):
            raise ValueError(f"actions must have shape ({self.n_envs}, {self.spec.n_agents}), got {actions.shape}")
        return self.game.payoff[tuple(actions.T)]


def joint_action_fields(payoff: np.ndarray, counts: JointActionCounts) -> dict[str, np.ndarray]:
    """Store fields of one-step episodes of the payoff game ``payoff``: ``counts[a]`` episodes of
    every joint action ``a``, ordered by joint action (the first agent's action slowest)."""
    game = payoff if isinstance(payoff, PayoffGame) else PayoffGame(payoff)
    table = _count_table(game.payoff.shape, counts)
    joint = np.nonzero(table)
    repeats = table[joint]
    actions = np.stack([np.repeat(index, repeats) for index in joint], axis=1).astype(np.int64)
    return one_step_fields(game.spec, actions, game.payoff[tuple(actions.T)])


def _count_table(shape: tuple[int, ...], counts: JointActionCounts) -> np.ndarray:
    if isinstance(counts, Mapping):
        table = np.zeros(shape, dtype=np.int64)
        for joint, count in counts.items():
            joint = tuple(int(a) for a in joint)
            if len(joint) != len(shape) or not all(0 <= a < n for a, n in zip(joint, shape, strict=True)):
                raise ValueError(f"joint action {joint} is not one of a game of shape {list(shape)}")
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
                raise ValueError(f"joint-action counts must be non-negative integers, got {count!r} for {joint}")
            table[joint] += count
    else:
        table = np.asarray(counts)
        if table.shape != shape:
            raise ValueError(f"joint-action counts must have the payoff's shape {list(shape)}, got {list(table.shape)}")
    if not np.issubdtype(table.dtype, np.integer) or (table < 0).any():
        raise ValueError("joint-action counts must be non-negative integers")
    if table.sum() == 0:
        raise ValueError("joint-action counts hold no episode")
    return table.astype(np.int64)


@dataclass(frozen=True)
class PayoffTask:
    """A payoff game with its datasets by quality: each the joint-action counts, or a function of
    the requested number of episodes (None: the default size) returning them."""

    game: PayoffGame
    datasets: Mapping[str, JointActionCounts | Callable[[int | None], JointActionCounts]]
    description: str = ""

    @property
    def qualities(self) -> tuple[str, ...]:
        return tuple(self.datasets)

    def fields(self, quality: str, episodes: int | None = None) -> dict[str, np.ndarray]:
        """Store fields of the dataset ``quality`` (:func:`joint_action_fields`)."""
        counts = self.datasets[quality]
        if callable(counts):
            counts = counts(episodes)
        elif episodes is not None:
            raise ValueError(f"quality {quality} has a fixed size; it takes no number of episodes")
        return joint_action_fields(self.game, counts)


# --- penalty XOR and M-NE ----------------------------------------------------------------

XOR = PayoffGame([[0.0, 1.0], [1.0, -2.0]])
MNE = PayoffGame(np.diag([5.0, 10.0, 20.0]))

DEFAULT_XOR_EPISODES_PER_JOINT_ACTION = 1000
DEFAULT_MNE_EPISODES = 9000  # divisible by 9 (uniform) and by 100 (0.8/0.1 products)
MNE_MARGINALS = {"uniform": np.full(3, 1.0 / 3.0), "biased": np.array([0.8, 0.1, 0.1])}
XOR_QUALITIES = ("ab", "ab-ba", "aa-ab-ba", "aa-ab-ba-bb")
MNE_QUALITIES = tuple(MNE_MARGINALS)


def xor_counts(quality: str, episodes: int | None = None) -> dict[tuple[int, int], int]:
    """Equal shares of the joint actions a quality names (``ab-ba``: (A,B) and (B,A))."""
    joint = [(ord(pair[0]) - ord("a"), ord(pair[1]) - ord("a")) for pair in quality.split("-")]
    total = episodes if episodes is not None else DEFAULT_XOR_EPISODES_PER_JOINT_ACTION * len(joint)
    if total % len(joint):
        raise ValueError(f"xor/{quality}: episodes must be a multiple of {len(joint)}, got {total}")
    return dict.fromkeys(joint, total // len(joint))


def product_counts(marginal: np.ndarray, n_agents: int, episodes: int, what: str) -> np.ndarray:
    """Joint-action counts of ``n_agents`` independent agents with one ``marginal`` each: exact
    products, or ``ValueError`` when ``episodes`` cannot hold them."""
    shares = marginal
    for _ in range(n_agents - 1):
        shares = np.multiply.outer(shares, marginal)
    exact = shares * episodes
    counts = np.rint(exact).astype(np.int64)
    if not np.allclose(counts, exact, atol=1e-6):
        raise ValueError(f"{what}: {episodes} episodes cannot hold the exact joint shares {shares}")
    return counts


def mne_counts(quality: str, episodes: int | None = None) -> np.ndarray:
    total = episodes if episodes is not None else DEFAULT_MNE_EPISODES
    return product_counts(MNE_MARGINALS[quality], 2, total, f"mne/{quality}")


XOR_TASK = PayoffTask(
    XOR,
    {quality: functools.partial(xor_counts, quality) for quality in XOR_QUALITIES},
    "penalty XOR; qualities name the joint actions in the data",
)
MNE_TASK = PayoffTask(
    MNE,
    {quality: functools.partial(mne_counts, quality) for quality in MNE_QUALITIES},
    "M-NE: equilibria (A,A)=5, (B,B)=10, (C,C)=20",
)


# --- OMSD's continuous bandit ------------------------------------------------------------

BANDIT_SPEC = EnvSpec(n_agents=2, obs_dim=1, state_dim=1, action_type="continuous", action_dim=1, episode_limit=1)
DEFAULT_BANDIT_EPISODES = 1_000_000
BANDIT_MEANS = np.array([[0.8, 0.8], [-0.8, -0.8]])
BANDIT_STD = 0.3
BANDIT_REFERENCE_RETURNS = {"min": -1.0, "max": 1.0}
"""r = a1 * a2 spans [-1, 1]."""


class BanditEnv(OneStepEnv):
    """OMSD's 2-D continuous bandit with r(a) = a1 * a2 on the clipped joint action."""

    def __init__(self, n_envs: int):
        super().__init__(BANDIT_SPEC, n_envs)

    def _team_reward(self, actions: np.ndarray) -> np.ndarray:
        joint = np.clip(np.asarray(actions, dtype=np.float32).reshape(self.n_envs, 2), -1.0, 1.0)
        return joint[:, 0] * joint[:, 1]


def bandit_fields(seed: int = 0, episodes: int | None = None) -> dict[str, np.ndarray]:
    """OMSD's bandit data: each joint action from one of two isotropic Gaussians, clipped to the box."""
    rng = np.random.default_rng(seed)
    total = episodes if episodes is not None else DEFAULT_BANDIT_EPISODES
    component = rng.integers(0, 2, size=total)
    joint = np.clip(BANDIT_MEANS[component] + BANDIT_STD * rng.standard_normal((total, 2)), -1.0, 1.0)
    actions = joint.astype(np.float32)[:, :, None]
    return one_step_fields(BANDIT_SPEC, actions, joint[:, 0] * joint[:, 1])
