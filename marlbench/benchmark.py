"""Benchmark files (``benchmarks/*.yaml``): instances, algorithms, seeds, profile, metric."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from marlbench.errors import ConfigError
from marlbench.report.tables import METRIC_DESCRIPTIONS

Instance = tuple[str, str, str]
REQUIRED_KEYS = ("name", "profile", "metric", "algorithms", "seeds", "instances")


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    mirrors: str
    profile: str
    metric: str
    algorithms: tuple[str, ...] | None
    """Algorithm names, or None for every registered algorithm."""
    seeds: tuple[int, ...]
    instances: tuple[Instance, ...]
    path: Path

    @classmethod
    def load(cls, path: Path | str) -> Benchmark:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read the benchmark file: {error}") from error
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping, found {type(data).__name__}")
        for key in REQUIRED_KEYS:
            if key not in data:
                raise ConfigError(f"{path}: field '{key}': expected it to be present, found nothing")
        if data["metric"] not in METRIC_DESCRIPTIONS:
            raise ConfigError(
                f"{path}: field 'metric': expected one of {sorted(METRIC_DESCRIPTIONS)}, found {data['metric']!r}"
            )
        instances = []
        for entry in data["instances"]:
            parts = str(entry).split("/")
            if len(parts) != 3:
                raise ConfigError(f"{path}: field 'instances': expected suite/task/quality, found {entry!r}")
            instances.append((parts[0], parts[1], parts[2]))
        algorithms = data["algorithms"]
        if algorithms != "registered" and not isinstance(algorithms, list):
            raise ConfigError(f"{path}: field 'algorithms': expected a list or 'registered', found {algorithms!r}")
        seeds = data["seeds"]
        if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
            raise ConfigError(f"{path}: field 'seeds': expected a list of integers, found {seeds!r}")
        return cls(
            name=str(data["name"]),
            title=str(data.get("title", data["name"])),
            mirrors=str(data.get("mirrors", "")),
            profile=str(data["profile"]),
            metric=str(data["metric"]),
            algorithms=None if algorithms == "registered" else tuple(str(a) for a in algorithms),
            seeds=tuple(seeds),
            instances=tuple(instances),
            path=path,
        )
