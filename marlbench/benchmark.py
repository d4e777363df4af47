"""Benchmark files (``benchmarks/*.yaml``): instances, algorithms, variants, seeds, profile,
metrics, and the published tables they mirror.

A table's columns are algorithm x variant pairs. ``algorithms: all`` names every algorithm
registered where the grid is planned, ordered by their ``column_order`` (adding an algorithm edits
no benchmark file); a list names some, in its own order. A variant is a labelled set of config
overrides (the ablations: ``alpha: 0.1`` …); its run directory name is
:func:`variant_name` of the overrides, the same name ``marlbench run --set`` gives, so
ablation runs and hand-started runs with the same overrides share results.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from marlbench.errors import ConfigError
from marlbench.metrics import METRIC_DESCRIPTIONS

Instance = tuple[str, str, str]
REQUIRED_KEYS = ("name", "profile", "metric", "algorithms", "seeds", "instances")
OPTIONAL_KEYS = ("title", "mirrors", "extra_metrics", "variants", "published")
EVERY_ALGORITHM = ("all", "registered")
"""``algorithms: all`` (``registered`` is the older spelling): every algorithm registered where the
grid is planned, in the order of their ``column_order``, then name."""


def variant_name(user_overrides: Mapping[str, Any]) -> str:
    """``default`` without overrides, else a readable, path-safe summary of them."""
    if not user_overrides:
        return "default"
    parts = [f"{key}={value}" for key, value in sorted(user_overrides.items())]
    return re.sub(r"[^A-Za-z0-9_.,=+\[\]-]", "", ",".join(parts).replace(" ", ""))


@dataclass(frozen=True)
class Variant:
    label: str
    """The column heading, e.g. ``α = 0.1``."""
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run directory name of this variant."""
        return variant_name(self.overrides)


DEFAULT_VARIANT = Variant("default", {})


@dataclass(frozen=True)
class PublishedRef:
    paper: str
    table: str
    metric: str


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    mirrors: str
    profile: str
    metric: str
    algorithms: tuple[str, ...] | None
    """Algorithm names (columns in this order), or None for every registered algorithm (``all``)."""
    seeds: tuple[int, ...]
    instances: tuple[Instance, ...]
    path: Path
    extra_metrics: tuple[str, ...] = ()
    """Further metrics reported as their own tables (the returns appendix of a win-rate table)."""
    variants: tuple[Variant, ...] = (DEFAULT_VARIANT,)
    published: tuple[PublishedRef, ...] = ()

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric, *self.extra_metrics)

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
        unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
        if unknown:
            raise ConfigError(
                f"{path}: fields {unknown}: expected only {sorted(REQUIRED_KEYS + OPTIONAL_KEYS)}, found these too"
            )
        metrics = [data["metric"], *data.get("extra_metrics", [])]
        for metric in metrics:
            if metric not in METRIC_DESCRIPTIONS:
                raise ConfigError(
                    f"{path}: field 'metric': expected one of {sorted(METRIC_DESCRIPTIONS)}, found {metric!r}"
                )
        instances = []
        for entry in data["instances"]:
            parts = str(entry).split("/")
            if len(parts) != 3:
                raise ConfigError(f"{path}: field 'instances': expected suite/task/quality, found {entry!r}")
            instances.append((parts[0], parts[1], parts[2]))
        algorithms = data["algorithms"]
        if algorithms not in EVERY_ALGORITHM and not (
            isinstance(algorithms, list) and algorithms and all(isinstance(a, str) for a in algorithms)
        ):
            expected = "'all' or a non-empty list of algorithm names"
            raise ConfigError(f"{path}: field 'algorithms': expected {expected}, found {algorithms!r}")
        seeds = data["seeds"]
        if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
            raise ConfigError(f"{path}: field 'seeds': expected a list of integers, found {seeds!r}")
        return cls(
            name=str(data["name"]),
            title=str(data.get("title", data["name"])),
            mirrors=str(data.get("mirrors", "")),
            profile=str(data["profile"]),
            metric=str(data["metric"]),
            algorithms=None if algorithms in EVERY_ALGORITHM else tuple(algorithms),
            seeds=tuple(seeds),
            instances=tuple(instances),
            path=path,
            extra_metrics=tuple(str(m) for m in data.get("extra_metrics", [])),
            variants=_load_variants(path, data.get("variants")),
            published=_load_published_refs(path, data.get("published"), metrics),
        )

    def with_overrides(self, profile: str | None = None, seeds: tuple[int, ...] | None = None) -> Benchmark:
        """The same benchmark with the command line's ``PROFILE=`` / ``SEEDS=`` in place."""
        changes: dict[str, Any] = {}
        if profile:
            changes["profile"] = profile
        if seeds:
            changes["seeds"] = tuple(seeds)
        return type(self)(**{**self.__dict__, **changes})


def _load_variants(path: Path, entries: Any) -> tuple[Variant, ...]:
    if entries is None:
        return (DEFAULT_VARIANT,)
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: field 'variants': expected a non-empty list, found {entries!r}")
    variants = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) - {"label", "overrides"} or "label" not in entry:
            raise ConfigError(
                f"{path}: field 'variants': expected entries {{label: ..., overrides: {{...}}}}, found {entry!r}"
            )
        overrides = entry.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise ConfigError(f"{path}: field 'variants.overrides': expected a mapping, found {overrides!r}")
        variants.append(Variant(str(entry["label"]), dict(overrides)))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: field 'variants': expected distinct overrides, found {names}")
    return tuple(variants)


def _load_published_refs(path: Path, entries: Any, metrics: list[str]) -> tuple[PublishedRef, ...]:
    if entries is None:
        return ()
    refs = []
    for entry in entries if isinstance(entries, list) else [entries]:
        if not isinstance(entry, dict) or set(entry) != {"paper", "table", "metric"}:
            raise ConfigError(
                f"{path}: field 'published': expected entries {{paper: ..., table: ..., metric: ...}}, found {entry!r}"
            )
        if entry["metric"] not in metrics:
            raise ConfigError(
                f"{path}: field 'published.metric': expected one of the file's metrics {metrics}, "
                f"found {entry['metric']!r}"
            )
        refs.append(PublishedRef(str(entry["paper"]), str(entry["table"]), str(entry["metric"])))
    return tuple(refs)
