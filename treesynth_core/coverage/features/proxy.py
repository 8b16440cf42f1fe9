"""The G-Vendi proxy of a project: which model and token cut, and how long its features take.

:class:`GradientSettings` (the proxy and ``max_tokens``) is saved in the project, so the Coverage
page and every ``--gradients`` command use the same proxy; a command's ``--proxy`` and
``--grad-max-tokens`` override it for one run. :func:`gradient_kind` says, without loading the
model, which feature kind a setting gives (see
:func:`~treesynth_core.coverage.features.proxy_model.feature_kind`).

Time estimates: :class:`TimedFeaturizer` records, per feature kind, how long each gradient run
took and how its batches varied (:func:`record_timing`); :func:`estimate_time` turns the last runs
into a range for N samples. Without a record the embedded proxy has a reference figure measured on
a 2-core CPU (:data:`REFERENCE_SECONDS`); any other proxy is measured on a few samples first
(:func:`measure`), as ``treesynth fill-gaps`` does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...errors import ConfigError
from ...llm.pricing import duration
from ...store.samples import Sample
from .proxy_model import (
    DEFAULT_DIM,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL_NAME,
    check_proxy,
    feature_kind,
    proxy_label,
    resolve_dtype,
)

#: Project blob holding the saved :class:`GradientSettings`.
SETTINGS_KEY = "settings.gradients"
#: Runs kept per feature kind for estimates.
KEEP_RUNS = 5
#: Seconds a sample of the embedded SmolLM2-135M proxy, by token cut, on 2 CPU cores (torch 2.x,
#: batch 8, samples at least as long as the cut): ``benchmarks/gradient_lengths.py``. An estimate
#: from it spans short samples (the 128-token figure) to samples as long as the cut.
REFERENCE_SECONDS = {128: 0.49, 256: 1.04, 512: 2.34, 1024: 6.21}


class GradientSettings(BaseModel):
    """The gradient proxy of a project. ``proxy`` None: the embedded SmolLM2-135M-Instruct (the paper
    uses Qwen2.5-0.5B-Instruct); otherwise a local causal-LM checkpoint folder or a ``.gguf`` file.
    ``max_tokens``: the cut of each sample in tokens (0: none, as the paper)."""

    model_config = ConfigDict(extra="forbid")

    proxy: str | None = None
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=0)

    def describe(self) -> str:
        cut = f"cut at {self.max_tokens} tokens" if self.max_tokens else "no token cut"
        return f"gradient proxy {self.proxy or DEFAULT_MODEL_NAME + ' (embedded)'}, {cut}"


class BlobStore(Protocol):
    def get_blob(self, key: str) -> bytes | None: ...

    def put_blob(self, key: str, data: bytes) -> None: ...


def gradient_settings(
    project: BlobStore, *, proxy: str | None = None, max_tokens: int | None = None, check: bool = True
) -> GradientSettings:
    """The project's saved settings with a command's overrides (None: keep the saved value);
    ``check``: refuse a proxy that cannot be found (:func:`~.proxy_model.check_proxy`)."""
    blob = project.get_blob(SETTINGS_KEY)
    data: dict[str, Any] = json.loads(blob) if blob else {}
    if proxy is not None:
        data["proxy"] = proxy or None  # "" (or the app's empty field): back to the embedded proxy
    if max_tokens is not None:
        data["max_tokens"] = max_tokens
    try:
        settings = GradientSettings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"invalid gradient setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if max_tokens is not None and max_tokens == 1:
        raise ConfigError("the gradient token cut must be 0 (none) or at least 2 tokens")
    if check:
        check_proxy(settings.proxy)
    return settings


def save_gradient_settings(project: BlobStore, settings: GradientSettings) -> None:
    """Save the proxy setting (after checking it can be found)."""
    check_proxy(settings.proxy)
    if settings.max_tokens == 1:
        raise ConfigError("the gradient token cut must be 0 (none) or at least 2 tokens")
    project.put_blob(SETTINGS_KEY, settings.model_dump_json().encode())


def gradient_kind(settings: GradientSettings) -> str:
    """The feature kind these settings give on this machine (dimension and seed at their defaults;
    the precision the featurizer picks here: bf16 on a CUDA GPU, else fp32)."""
    return feature_kind(proxy_label(settings.proxy), DEFAULT_DIM, 0, settings.max_tokens, resolve_dtype("auto"))


def load_gradients(settings: GradientSettings) -> Any:
    """The loaded featurizer of ``settings`` (kept loaded per process)."""
    from .gradients import load_featurizer

    return load_featurizer(settings.proxy, settings.max_tokens)


# -- timing ---------------------------------------------------------------------------------------


def _timing_key(kind: str) -> str:
    return f"timing.{kind}"


def record_timing(project: BlobStore, kind: str, samples: int, seconds: float, rates: Sequence[float]) -> None:
    """Keep one run of ``samples`` features in ``seconds`` (``rates``: seconds a sample of each batch)."""
    if samples <= 0 or seconds <= 0:
        return
    runs = timings(project, kind)[-(KEEP_RUNS - 1) :]
    runs.append(
        {
            "n": samples,
            "s": round(seconds, 4),
            "lo": round(min(rates or [seconds / samples]), 4),
            "hi": round(max(rates or [seconds / samples]), 4),
        }
    )
    project.put_blob(_timing_key(kind), json.dumps(runs).encode())


def timings(project: BlobStore, kind: str) -> list[dict[str, float]]:
    """The recorded runs of ``kind``, oldest first."""
    blob = project.get_blob(_timing_key(kind))
    try:
        runs = json.loads(blob) if blob else []
    except ValueError:
        return []
    return [r for r in runs if isinstance(r, dict) and r.get("n") and r.get("s")]


@dataclass(frozen=True)
class TimeEstimate:
    """How long gradient features of ``samples`` samples take: ``seconds`` (the expected figure)
    within ``low``..``high``, from ``source``; all None when nothing is known yet."""

    samples: int
    seconds: float | None
    low: float | None
    high: float | None
    per_sample: tuple[float, float] | None
    source: str

    @property
    def known(self) -> bool:
        return self.seconds is not None

    def text(self) -> str:
        """One line, e.g. ``about 4 min (3-6 min) for 120 samples at 1.5-3.0 s a sample; source``."""
        if self.samples == 0:
            return "no gradient features to compute (all are stored)"
        if self.seconds is None or self.low is None or self.high is None or self.per_sample is None:
            return f"{self.samples} samples need gradient features; {self.source}"
        lo, hi = self.per_sample
        return (
            f"about {duration(self.seconds)} ({duration(self.low)} to {duration(self.high)}) for "
            f"{self.samples} samples at {lo:.2g}-{hi:.2g} s a sample; {self.source}"
        )


def estimate_time(project: BlobStore, settings: GradientSettings, samples: int) -> TimeEstimate:
    """The time gradient features of ``samples`` samples take with ``settings``: from this
    project's recorded runs of the same feature kind (the range spans their fastest and slowest
    batches); else, for the embedded proxy, the reference figure of this cut on 2 CPU cores; else
    unknown (measure a few samples first: :func:`measure`)."""
    kind = gradient_kind(settings)
    runs = timings(project, kind)
    if runs:
        total_n, total_s = sum(r["n"] for r in runs), sum(r["s"] for r in runs)
        lo, hi = min(r["lo"] for r in runs), max(r["hi"] for r in runs)
        rate = total_s / total_n
        source = f"measured on {int(total_n)} samples of this project (last {len(runs)} runs)"
        return TimeEstimate(samples, samples * rate, samples * min(lo, rate), samples * max(hi, rate), (lo, hi), source)
    if settings.proxy is None or proxy_label(settings.proxy) == DEFAULT_MODEL_NAME:
        known = sorted(REFERENCE_SECONDS)
        cut = settings.max_tokens or known[-1]
        at = min(known, key=lambda c: abs(c - cut))
        high = REFERENCE_SECONDS[at] * cut / at  # every sample at least as long as the cut
        low = min(high, REFERENCE_SECONDS[known[0]])  # short samples (128 tokens or less)
        longer = "; without a cut, samples longer than 1024 tokens take longer" if not settings.max_tokens else ""
        source = f"reference figure for {DEFAULT_MODEL_NAME} on 2 CPU cores (a GPU is much faster){longer}"
        return TimeEstimate(samples, samples * high, samples * low, samples * high, (low, high), source)
    return TimeEstimate(
        samples, None, None, None, None, "time unknown for this proxy until it has run once on this project"
    )


class TimedFeaturizer:
    """A gradient featurizer that records how long each ``features`` call took in the project
    (the figures :func:`estimate_time` uses). ``name`` and ``dim`` are the wrapped featurizer's."""

    def __init__(self, featurizer: Any, project: BlobStore) -> None:
        self.featurizer, self.project = featurizer, project
        self.name: str = featurizer.name

    @property
    def dim(self) -> int:
        return int(self.featurizer.dim)

    def features(
        self, samples: Sequence[Sample], *, batch_size: int = 8, progress: Callable[..., None] | None = None
    ) -> np.ndarray:
        rates: list[float] = []
        last = [time.perf_counter(), 0]
        start = last[0]

        def timed(done: int, total: int, *note: str) -> None:
            now = time.perf_counter()
            if done > last[1]:
                rates.append((now - last[0]) / (done - last[1]))
            last[:] = [now, done]
            if progress:
                progress(done, total, *note)

        out = self.featurizer.features(samples, batch_size=batch_size, progress=timed)
        record_timing(self.project, self.name, len(samples), time.perf_counter() - start, rates)
        return np.asarray(out)

    def __repr__(self) -> str:
        return f"TimedFeaturizer({self.name!r})"


def measure(featurizer: TimedFeaturizer, samples: Sequence[Sample], store: Any | None = None, count: int = 8) -> None:
    """Time gradient features of up to ``count`` of ``samples`` in batches of 4 (the run is
    recorded). With a feature ``store`` they are stored too, so the measurement is not wasted."""
    chosen = list(samples)[:count]
    if not chosen:
        return
    if store is not None and all(s.id for s in chosen):
        from .embeddings import ensure_features

        ensure_features(store, chosen, featurizer, batch_size=4)
    else:
        featurizer.features(chosen, batch_size=4)


# -- gap filling ----------------------------------------------------------------------------------


class SampleStore(BlobStore, Protocol):
    def samples(self, *, sample_set: str = ..., leaf_id: str | None = None) -> list[Sample]: ...

    def get_features(self, kind: str, sample_ids: Any) -> dict[int, bytes]: ...


def missing_features(project: SampleStore, kind: str, sample_sets: Sequence[str] = ("tree",)) -> list[Sample]:
    """The samples of ``sample_sets`` that have no stored features of ``kind``."""
    samples = [s for name in sample_sets for s in project.samples(sample_set=name)]
    have = project.get_features(kind, [s.id for s in samples])
    return [s for s in samples if s.id not in have]


def gradient_estimate(
    project: SampleStore, settings: GradientSettings, *, candidates: int = 0, sample_sets: Sequence[str] = ("tree",)
) -> TimeEstimate:
    """The time gradient features take for the samples of ``sample_sets`` without stored ones, plus
    ``candidates`` unsaved samples (gap filling featurizes every candidate; the kept ones are stored,
    not computed again)."""
    missing = missing_features(project, gradient_kind(settings), sample_sets)
    return estimate_time(project, settings, len(missing) + candidates)
