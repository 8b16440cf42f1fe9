"""The flat (Temp) baseline with the scripted fake: size, storage, idempotent reruns, dedup with a
bounded number of extra calls, concurrency, cancel."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from tests.fakes import ScriptedLLM
from tests.trees import split_root
from treesynth_core.errors import Cancelled, TreeSynthError
from treesynth_core.generate.baseline import BaselineOptions, default_extra_calls, synthesize_baseline
from treesynth_core.llm.recording import recording
from treesynth_core.store.samples import BASELINE_SET, NewSample


@pytest.fixture
def project(project):
    """The shared project split on "Operation" into two approved leaves, one sample in the first."""
    tree = split_root(project, "Operation", ["addition", "division"])
    leaf = tree.children(tree.root_id)[0].id
    project.add_samples([NewSample(leaf_id=leaf, key="0:0", instruction="tree sample one two", path=[])])
    return project


def run(project, llm, concurrency=8, progress=None, cancel=None, **options):
    wrapped = recording(llm, project, project.start_run("baseline", {}))
    return asyncio.run(
        synthesize_baseline(
            project, wrapped, BaselineOptions(**options), concurrency=concurrency, progress=progress, cancel=cancel
        )
    )


def test_fills_n_flat_samples_in_their_own_set(project):
    llm = ScriptedLLM()
    report = run(project, llm, n=12, per_call=5)
    root = project.tree().root_id
    flat = project.samples(sample_set=BASELINE_SET)
    assert report.added == 12 and report.total == 12 and report.short == 0 and report.calls == 3
    assert {s.leaf_id for s in flat} == {root} and {s.sample_set for s in flat} == {BASELINE_SET}
    assert all(s.path == [] and s.model == "fake-model" and s.call_id for s in flat)
    assert sorted(s.key for s in flat)[:2] == ["0:0", "0:1"]
    assert project.sample_counts() == {project.tree().children(root)[0].id: 1}  # the tree's set is untouched
    prompt = llm.history[0].messages[-1][1]
    assert "Math word problems" in prompt and "GSM8K-style" in prompt and "attributes" not in prompt
    assert {r.temperature for r in llm.history} == {1.0}
    assert len({r.seed for r in llm.history}) == 3


def test_rerun_is_served_from_cache_and_adds_nothing(project):
    run(project, ScriptedLLM(), n=10, per_call=5)
    again = ScriptedLLM()
    report = run(project, again, n=10, per_call=5)
    assert again.calls() == 0 and report.added == 0 and report.total == 10
    more = ScriptedLLM()
    report = run(project, more, n=13, per_call=5)
    assert report.added == 3 and report.total == 13 and more.calls() == 1


def test_duplicates_are_dropped_and_replaced_by_extra_calls(project):
    llm = ScriptedLLM()
    same = json.dumps({"samples": ["Tom has two apples today.", "Tom has two apples today!", "Ann buys five pears."]})
    llm.enqueue("synth", [same, same])
    report = run(project, llm, n=6, per_call=3)
    texts = [s.instruction for s in project.samples(sample_set=BASELINE_SET)]
    assert len(texts) == 6 and len(set(texts)) == 6
    assert report.duplicates == 4 and report.calls == 4


def test_a_collapsing_generator_stops_after_the_extra_calls(project):
    llm = ScriptedLLM()
    same = json.dumps({"samples": ["The only question there is.", "Another single question here."]})
    llm.enqueue("synth", [same] * 50)
    report = run(project, llm, n=10, per_call=2)
    assert report.total == 2 and report.short == 8
    assert llm.calls("synth") == 5 + default_extra_calls(10, 2) == report.calls


def test_unparsable_replies_count_as_failed_calls(project):
    llm = ScriptedLLM()
    llm.enqueue("synth", ["not json", "still not json"])
    report = run(project, llm, n=4, per_call=2)
    assert report.failed_calls == 1 and report.total == 4


class InFlight(ScriptedLLM):
    """Counts the calls in flight at once (``peak``); ``max_parallel`` is the backend's own limit."""

    def __init__(self, max_parallel: int | None = None) -> None:
        super().__init__()
        self.max_parallel, self.in_flight, self.peak = max_parallel, 0, 0

    async def complete(self, request):
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            return await super().complete(request)
        finally:
            self.in_flight -= 1


def test_calls_run_concurrently(project):
    llm = InFlight()
    report = run(project, llm, n=30, per_call=3, concurrency=4)
    assert report.total == 30 and llm.peak == 4


def test_responses_follow_the_tree_samples(project):
    llm = ScriptedLLM()
    run(project, llm, n=2, per_call=2)
    assert llm.calls("response") == 0
    root = project.tree().root_id
    leaf = project.tree().children(root)[0].id
    project.add_samples([NewSample(leaf_id=leaf, key="1:0", instruction="answered one", path=[], response="42")])
    llm = ScriptedLLM()
    run(project, llm, n=4, per_call=2)
    flat = project.samples(sample_set=BASELINE_SET)
    assert llm.calls("response") == 2 and [s.response is not None for s in flat] == [False, False, True, True]


def test_cancel_keeps_what_was_made(project):
    cancel = threading.Event()
    seen: list[int] = []

    def progress(done, total, note):
        seen.append(done)
        cancel.set()

    with pytest.raises(Cancelled, match="baseline stopped; samples made so far are saved"):
        run(project, ScriptedLLM(), n=20, per_call=5, progress=progress, cancel=cancel)
    assert seen == [5] and len(project.samples(sample_set=BASELINE_SET)) == 5


def test_bad_sizes_are_clear_errors(project):
    with pytest.raises(TreeSynthError, match="baseline needs n >= 1 samples"):
        run(project, ScriptedLLM(), n=0)
    with pytest.raises(TreeSynthError, match="per_call"):
        run(project, ScriptedLLM(), n=10, per_call=30)


def test_a_one_call_backend_gets_one_call_at_a_time_and_progress_after_each(project):
    """Like the embedded model (max_parallel = 1): calls go one at a time, in call order, so each
    call's samples are stored and shown as it returns (not after a whole wave, in random order)."""
    llm, ticks = InFlight(max_parallel=1), []
    report = run(project, llm, n=20, per_call=5, concurrency=8, progress=lambda done, total, _: ticks.append(done))
    assert report.total == 20 and llm.peak == 1
    assert ticks == [5, 10, 15, 20]


def test_a_short_baseline_is_topped_up_by_another_seed_only(project):
    dup = json.dumps({"samples": ["Tom has three apples and eats one."] * 5})
    llm = ScriptedLLM()
    llm.enqueue("synth", [dup] * 50)
    report = run(project, llm, n=10, per_call=5)
    assert report.total == 1 and report.short == 9
    same = ScriptedLLM()
    assert run(project, same, n=10, per_call=5).total == 1 and same.calls() == 0
    report = run(project, ScriptedLLM(), n=10, per_call=5, seed=1)
    assert report.total == 10 and report.short == 0


def test_the_app_tops_up_a_short_baseline_with_the_next_seed():
    from types import SimpleNamespace

    from studio.coverage_panel import next_baseline_seed

    last = SimpleNamespace(params={"n": 88, "seed": 2}, active=False)
    assert next_baseline_seed(None, 0, 88) == 0
    assert next_baseline_seed(last, 29, 88) == 3  # short: new questions
    assert next_baseline_seed(last, 88, 88) == 2
    assert next_baseline_seed(None, 29, 88) == 1  # made short by `treesynth baseline` (seed 0): no job on record
    assert next_baseline_seed(SimpleNamespace(params={"seed": 2}, active=True), 29, 88) == 2
    assert next_baseline_seed(last, 0, 88) == 3  # a run that made none (walking the app: the retry made 0 calls)


def test_progress_and_job_summary_say_what_a_short_baseline_lacks(project):
    from treesynth_core.jobs.specs import job_spec

    notes = []
    dup = json.dumps({"samples": ["Tom has three apples and eats one."] * 5})
    llm = ScriptedLLM()
    llm.enqueue("synth", [dup] * 50)
    report = run(project, llm, n=10, per_call=5, progress=lambda done, total, note: notes.append((done, total, note)))
    assert notes[0] == (1, 10, "samples (1 calls)") and notes[-1][2] == f"samples ({report.calls} calls)"
    summary = job_spec("baseline").summary(report, None)
    assert summary.startswith("flat baseline: 1 of 10 samples, added 1; 9 short") and "new questions" in summary
