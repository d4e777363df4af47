"""Updates per second of the authors' own OMIGA and ComaDICE training steps on this machine,
next to ours, at the papers' HalfCheetah 6x1 shapes (batch 128, 256-256 networks, 64-unit mixer).

The authors' code is not part of marlbench: point this script at local checkouts of
https://github.com/ZhengYinan-AIR/OMIGA and https://github.com/vietbt/ComaDICE. It imports
their network and trainer modules unchanged and calls their train step on one fixed random
batch, as ``updates.py`` does for ours; the few modules their trainers import but a train
step never uses (tensorboard, the evaluation worker, the environment wrapper) are replaced
by empty stand-ins so no simulator or logger is needed. Prints numbers; asserts nothing.

Run: python benchmarks/perf/reference_updates.py --omiga PATH --comadice PATH [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

N_AGENTS, OBS_DIM, ACTION_DIM, BATCH = 6, 23, 1, 128


def rate(step: Callable[[], object], seconds: float) -> float:
    for _ in range(10):
        step()
    updates, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        updates += 1
    return updates / (time.perf_counter() - started)


def stand_in(name: str, **attributes: object) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules.setdefault(name, module)


def omiga_step(checkout: Path) -> Callable[[], object]:
    """``OMIGA.train_step`` of ZhengYinan-AIR/OMIGA (algos/OMIGA.py) with its config defaults."""
    sys.path.insert(0, str(checkout))
    from algos.OMIGA import OMIGA  # noqa: PLC0415 (from the user's checkout)

    config = {
        "gamma": 0.99, "tau": 0.005, "hidden_sizes": 256, "mix_hidden_sizes": 64, "batch_size": BATCH,
        "lr": 5e-4, "grad_norm_clip": 1.0, "device": "cpu",
    }  # fmt: skip
    agent = OMIGA(OBS_DIM, ACTION_DIM, N_AGENTS, None, config)
    obs = torch.randn(BATCH, N_AGENTS, OBS_DIM)
    actions = torch.rand(BATCH, N_AGENTS, ACTION_DIM) * 2 - 1
    reward, mask = torch.randn(BATCH, 1), torch.ones(BATCH, 1)
    # train_step(o, s, a, r, mask, s_next, o_next, a_next); its mixer flattens s = [B, N, obs].
    return lambda: agent.train_step(obs, obs, actions, reward, mask, obs, obs, actions)


def comadice_step(checkout: Path) -> Callable[[], object]:
    """``Trainer.update`` of vietbt/ComaDICE (runner/madice/continuous.py), soft-chi2, alpha 10."""
    sys.path.insert(0, str(checkout))
    stand_in("torch.utils.tensorboard", SummaryWriter=lambda *args, **kwargs: None)
    stand_in("runner.evaluate", RolloutWorkerContinuous=None)
    stand_in("envs.mamujoco.env", MaMujocoWrapper=None)
    from agents.continuous import MADice  # noqa: PLC0415 (from the user's checkout)

    # The trainer module by its path: the ``runner`` package's __init__ imports every trainer.
    location = checkout / "runner" / "madice" / "continuous.py"
    spec = importlib.util.spec_from_file_location("reference_madice_trainer", location)
    assert spec is not None and spec.loader is not None, location
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Trainer = module.Trainer  # noqa: N806 (their class)

    model = MADice(OBS_DIM, OBS_DIM, ACTION_DIM, N_AGENTS)
    trainer = Trainer(model, "reference", None, N_AGENTS, 10.0, 1e-4, "soft_chisquare", 0, device="cpu")
    obs = torch.randn(BATCH, N_AGENTS, OBS_DIM)
    actions = torch.rand(BATCH, N_AGENTS, ACTION_DIM) * 2 - 1
    reward, mask = torch.randn(BATCH, 1), torch.ones(BATCH, 1)
    is_initial = torch.rand(BATCH, N_AGENTS, 1) < 0.05
    # update(states, obs, actions, rewards, masks, next_states, next_obs, is_inits)
    return lambda: trainer.update(obs, obs, actions, reward, mask, obs, obs, is_initial)


def ours(name: str) -> Callable[[], object]:
    sys.path.insert(0, str(Path(__file__).parent))
    from updates import SHAPES, random_batch  # noqa: PLC0415

    from marlbench.algorithm import get_algorithm, resolve_config  # noqa: PLC0415

    cls = get_algorithm(name)
    spec = SHAPES["halfcheetah-6x1"]
    algorithm = cls(spec, resolve_config(cls, "perf", "halfcheetah-6x1", "random", {}), torch.device("cpu"))
    batch = random_batch(spec, BATCH)
    steps = iter(range(1, 10**9))
    return lambda: algorithm.update(batch, next(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--omiga", type=Path, help="checkout of ZhengYinan-AIR/OMIGA")
    parser.add_argument("--comadice", type=Path, help="checkout of vietbt/ComaDICE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.omiga is None and args.comadice is None:
        parser.error("give --omiga PATH and/or --comadice PATH (checkouts of the authors' repositories)")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), HalfCheetah 6x1 shapes, batch {BATCH}")
    for name, checkout, build in (("comadice", args.comadice, comadice_step), ("omiga", args.omiga, omiga_step)):
        if checkout is None:
            continue
        theirs = rate(build(checkout.resolve()), args.seconds)
        mine = rate(ours(name), args.seconds)
        speedup = mine / theirs
        print(f"{name:9s} authors' code {theirs:6.1f} updates/s, marlbench {mine:6.1f} updates/s ({speedup:.2f}x)")


if __name__ == "__main__":
    main()
