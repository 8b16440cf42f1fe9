"""The G-Vendi proxy settings of a project, the timing records and the time estimates built on them,
and gap filling's store-backed featurize (no model: fake featurizers)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from treesynth_core.coverage.features.embeddings import ensure_features
from treesynth_core.coverage.features.proxy import (
    KEEP_RUNS,
    REFERENCE_SECONDS,
    GradientSettings,
    TimedFeaturizer,
    estimate_time,
    gradient_estimate,
    gradient_kind,
    gradient_settings,
    measure,
    missing_features,
    record_timing,
    save_gradient_settings,
    timings,
)
from treesynth_core.coverage.features.proxy_model import DEFAULT_MAX_TOKENS, proxy_label
from treesynth_core.errors import ConfigError
from treesynth_core.generate.gaps import ORIGIN, StoreFeaturize
from treesynth_core.llm.pricing import duration
from treesynth_core.store.samples import NewSample, Sample


@pytest.fixture
def project(project):
    """The shared project with six tree samples and three baseline samples on the root."""
    root = project.tree().root_id
    project.add_samples(
        [NewSample(leaf_id=root, key=f"k{i}", instruction=f"question {i} about {i * 7}", path=[]) for i in range(6)]
    )
    project.add_samples(
        [
            NewSample(leaf_id=root, key=f"b{i}", instruction=f"flat {i}", path=[], sample_set="baseline")
            for i in range(3)
        ]
    )
    return project


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


class Clock:
    """A fake perf_counter the timed featurizer reads."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowFake:
    """Fake gradient features that 'take' ``cost(sample)`` seconds on a fake clock, per batch."""

    def __init__(self, name: str, clock: Clock, cost=lambda s: 1.0) -> None:
        self.name, self.dim, self.clock, self.cost, self.seen = name, 4, clock, cost, 0

    def features(self, samples, *, batch_size=8, progress=None):
        for start in range(0, len(samples), batch_size):
            batch = samples[start : start + batch_size]
            self.clock.now += sum(self.cost(s) for s in batch)
            if progress:
                progress(start + len(batch), len(samples))
        self.seen += len(samples)
        rng = np.random.default_rng(len(samples))
        return rng.normal(size=(len(samples), 4)).astype(np.float32)


# -- settings -------------------------------------------------------------------------------------


def test_settings_default_save_override_and_refuse(project, checkpoint):
    default = gradient_settings(project)
    assert default == GradientSettings() and default.proxy is None and default.max_tokens == DEFAULT_MAX_TOKENS
    assert "SmolLM2-135M-Instruct (embedded)" in default.describe() and "512 tokens" in default.describe()
    save_gradient_settings(project, GradientSettings(proxy=str(checkpoint), max_tokens=256))
    saved = gradient_settings(project)
    assert saved.proxy == str(checkpoint) and saved.max_tokens == 256
    assert gradient_settings(project, max_tokens=0).describe().endswith("no token cut")
    assert gradient_settings(project, proxy="").proxy is None  # "" goes back to the embedded proxy
    assert gradient_settings(project).proxy == str(checkpoint)  # overrides are not saved
    assert gradient_kind(saved) == f"grad:{proxy_label(str(checkpoint))}:1024:0:t256"
    assert gradient_kind(GradientSettings()) == "grad:SmolLM2-135M-Instruct:1024:0:t512"

    with pytest.raises(ConfigError, match="does not exist"):
        save_gradient_settings(project, GradientSettings(proxy=str(checkpoint.parent / "gone")))
    with pytest.raises(ConfigError, match="at least 2"):
        gradient_settings(project, max_tokens=1)
    with pytest.raises(ConfigError, match="max_tokens"):
        gradient_settings(project, max_tokens=-5)
    assert gradient_settings(project).max_tokens == 256  # nothing bad was saved

    (checkpoint / "config.json").unlink()  # the saved folder is no checkpoint any more
    with pytest.raises(ConfigError, match="no config.json"):
        gradient_settings(project)
    assert gradient_settings(project, check=False).proxy == str(checkpoint)  # still shown


# -- timing and estimates -------------------------------------------------------------------------


def test_timed_featurizer_records_each_run_with_its_batch_rates(project, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("treesynth_core.coverage.features.proxy.time.perf_counter", clock)
    samples = project.samples()
    fake = SlowFake("grad:fake:4:0", clock, cost=lambda s: 3.0 if s.key in ("k0", "k1") else 1.0)
    timed = TimedFeaturizer(fake, project)
    assert timed.name == fake.name and timed.dim == 4
    X = timed.features(samples, batch_size=2)
    assert X.shape == (6, 4)
    [run] = timings(project, fake.name)
    assert run == {"n": 6, "s": 10.0, "lo": 1.0, "hi": 3.0}  # batches of 2: 6 s, 2 s, 2 s
    for _ in range(KEEP_RUNS + 2):
        timed.features(samples[:2], batch_size=2)
    assert len(timings(project, fake.name)) == KEEP_RUNS and timings(project, "grad:other") == []


def test_estimate_from_the_projects_runs(project):
    settings = GradientSettings()
    kind = gradient_kind(settings)
    record_timing(project, kind, 10, 20.0, [1.5, 2.5])
    record_timing(project, kind, 10, 40.0, [3.0, 5.0])
    est = estimate_time(project, settings, 100)
    assert est.known and est.seconds == pytest.approx(300.0)  # 3 s a sample over both runs
    assert (est.low, est.high) == (pytest.approx(150.0), pytest.approx(500.0)) and est.per_sample == (1.5, 5.0)
    assert "this project" in est.source and "5 min (2 min to 8 min) for 100 samples" in est.text()
    assert estimate_time(project, GradientSettings(max_tokens=128), 100).source.startswith("reference")


def test_estimate_without_runs(project, checkpoint):
    ref = estimate_time(project, GradientSettings(max_tokens=512), 10)
    assert ref.high == pytest.approx(10 * REFERENCE_SECONDS[512]) and ref.low == pytest.approx(
        10 * REFERENCE_SECONDS[128]
    )
    assert "reference figure" in ref.text() and "2 CPU cores" in ref.text()
    whole = estimate_time(project, GradientSettings(max_tokens=0), 10)
    assert whole.high == pytest.approx(10 * REFERENCE_SECONDS[1024]) and "longer" in whole.source
    assert estimate_time(project, GradientSettings(max_tokens=300), 1).high == pytest.approx(
        REFERENCE_SECONDS[256] * 300 / 256
    )
    unknown = estimate_time(project, GradientSettings(proxy=str(checkpoint)), 10)
    assert not unknown.known and "unknown" in unknown.text() and unknown.text().startswith("10 samples")
    assert estimate_time(project, GradientSettings(), 0).text().startswith("no gradient features to compute")
    assert [duration(s) for s in (0.2, 45, 600, 9000)] == ["1 s", "45 s", "10 min", "2.5 h"]


def test_estimates_count_missing_samples_and_candidates(project, monkeypatch):
    settings = GradientSettings()
    kind = gradient_kind(settings)
    tree = project.samples()
    project.put_features(kind, {s.id: np.ones(4, dtype=np.float32).tobytes() for s in tree[:4]})
    assert [s.key for s in missing_features(project, kind)] == ["k4", "k5"]
    assert len(missing_features(project, kind, ("tree", "baseline"))) == 5
    assert gradient_estimate(project, settings).samples == 2
    assert gradient_estimate(project, settings, candidates=20).samples == 22
    assert gradient_estimate(project, settings, candidates=20, sample_sets=("tree", "baseline")).samples == 25


def test_measure_stores_what_it_times(project, monkeypatch):
    clock = Clock()
    monkeypatch.setattr("treesynth_core.coverage.features.proxy.time.perf_counter", clock)
    fake = SlowFake("grad:fake:4:0", clock)
    timed = TimedFeaturizer(fake, project)
    measure(timed, project.samples(), store=project, count=3)
    assert fake.seen == 3 and len(project.get_features(fake.name, [s.id for s in project.samples()])) == 3
    assert timings(project, fake.name)[-1]["n"] == 3
    unsaved = [Sample(leaf_id="x", key="c", instruction="new", path=[])]  # id 0: timed, not stored
    measure(timed, unsaved, store=project)
    assert fake.seen == 4 and len(timings(project, fake.name)) == 2


# -- gap filling's featurize ----------------------------------------------------------------------


def test_store_featurize_stores_the_kept_candidates(project):
    clock = Clock()
    fake = SlowFake("grad:fake:4:0", clock)
    seen = []
    featurize = StoreFeaturize(project, fake, progress=lambda *a: seen.append(a))
    pool = project.samples()
    assert featurize(pool).shape == (6, 4) and fake.seen == 6 and seen  # stored, with progress
    featurize(pool)
    assert fake.seen == 6  # from the store
    root = project.tree().root_id
    candidates = [
        NewSample(
            leaf_id=root, key=f"gap:0:0:{i}", instruction=f"new {i}", path=[], extra={"origin": ORIGIN, "round": 0}
        )
        for i in range(3)
    ]
    Y = featurize([Sample(**{f: getattr(c, f) for f in NewSample.__dataclass_fields__}) for c in candidates])
    assert fake.seen == 9
    project.add_samples(candidates[:2])  # two were kept
    assert featurize.store_kept() == 2 and featurize.store_kept() == 0
    kept = [s for s in project.samples() if s.extra.get("origin") == ORIGIN]
    X = ensure_features(project, kept, fake)
    assert fake.seen == 9 and np.array_equal(X, Y[:2])  # never featurized twice
    assert json.loads(json.dumps(featurize.name)) == fake.name
