"""Decontamination: word n-gram matching (known overlaps found, near-misses not, short items, determinism),
the project's record of it, and export leaving contaminated samples out with the card saying so."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from treesynth_core.data import decontam as D
from treesynth_core.data.decontam_options import DecontamOptions
from treesynth_core.data.decontam_run import decontaminate
from treesynth_core.data.export import export_set
from treesynth_core.errors import DataError
from treesynth_core.store.samples import NewSample


def sentence(start: int, stop: int, word: str = "w") -> str:
    return " ".join(f"{word}{i}" for i in range(start, stop))


LONG = sentence(0, 40)  # 40 words: matched by 13-grams
SHORT = sentence(0, 12, "s")  # 12 words (under 26): matched by 8-grams
TINY = "alpha beta gamma delta"  # 4 words (under 8): matched whole


def index(*texts: str, n: int = D.DEFAULT_N) -> D.EvalIndex:
    return D.EvalIndex("eval", [D.EvalItem(f"row {i}", t) for i, t in enumerate(texts, 1)], n=n)


def flagged(idx: D.EvalIndex, *texts: str, chunk: int = D.CHUNK) -> list[int]:
    result = D.scan([idx], list(enumerate(texts, 1)), chunk=chunk)
    return sorted(h.sample_id for h in result.hits)


def test_normalization_folds_case_width_and_punctuation():
    assert D.words("Ｈｅｌｌｏ, WORLD!!  It's\tsnake_case (x+y)") == [
        "hello",
        "world",
        "it",
        "s",
        "snake",
        "case",
        "x",
        "y",
    ]


def test_which_n_gram_length_each_item_uses():
    assert [D.gram_length(m) for m in (2, 3, 7, 8, 25, 26, 400)] == [None, 3, 7, 8, 8, 13, 13]
    assert [D.gram_length(m, n=5) for m in (4, 5, 9, 10)] == [4, 5, 5, 5]


def test_known_overlaps_are_found_exact_recased_and_in_the_middle():
    idx = index(LONG)
    middle = sentence(14, 27)  # exactly 13 words from the middle of the item
    recased = ", ".join(w.upper() for w in sentence(3, 16).split()) + "!"
    texts = [LONG, f"Some preface. {middle} and an ending.", recased, "unrelated words " * 20]
    assert flagged(idx, *texts) == [1, 2, 3]


def test_near_misses_sharing_n_minus_one_words_are_not_flagged():
    idx = index(LONG, SHORT, TINY)
    texts = [
        f"x {sentence(5, 17)} y",  # 12 words of the long item
        f"start {sentence(2, 9, 's')} end",  # 7 words of the short item
        "alpha beta gamma epsilon delta",  # the tiny item broken up
        sentence(0, 6) + " gap " + sentence(6, 13),  # 13 words but not in a row
    ]
    assert flagged(idx, *texts) == []


def test_short_items_use_8_grams_and_tiny_items_match_whole():
    idx = index(SHORT, TINY, "yes no")
    assert (idx.items, idx.skipped) == (2, 1)
    assert sorted(idx.tables) == [4, 8]
    texts = [f"prefix {sentence(3, 11, 's')} suffix", "Alpha, beta; GAMMA delta.", "yes no yes no"]
    assert flagged(idx, *texts) == [1, 2]


def test_n_grams_never_span_two_samples_or_chunks():
    idx = index(LONG)
    halves = [sentence(0, 7), sentence(7, 14)]  # together a 14-word run of the item, apart 7 each
    assert flagged(idx, *halves, chunk=1) == [] and flagged(idx, *halves) == []


def test_each_hit_names_the_item_and_the_matching_n_gram():
    idx = D.EvalIndex("bench.jsonl", [D.EvalItem("row 1", "nothing here"), D.EvalItem("row 2", LONG)])
    result = D.scan([idx], [(7, "noise " + sentence(20, 33))])
    (hit,) = result.hits
    assert (hit.sample_id, hit.source, hit.item, hit.k) == (7, "bench.jsonl", "row 2", 13)
    assert hit.ngram == sentence(20, 33)
    assert result.checked == 1 and result.flagged("bench.jsonl") == 1


def test_hashes_are_the_same_in_another_process():
    code = (
        "from treesynth_core.data import decontam as D;"
        "i = D.EvalIndex('e', [D.EvalItem('r', ' '.join(f'w{k}' for k in range(40)))]);"
        "print(sorted(int(h) for h in i.tables[13][0])[:3])"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True) for _ in (0, 1)]
    here = sorted(int(h) for h in index(LONG).tables[13][0])[:3]
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout) == here


def test_n_below_three_is_refused():
    with pytest.raises(DataError, match="at least 3 words"):
        index(LONG, n=2)


# -- the project record and export --------------------------------------------------------------


def add_set(project, name: str, instructions: list[str]) -> None:
    project.add_samples(
        NewSample(leaf_id="", key=f"k{i}", instruction=text, path=[], response=f"answer {i}", sample_set=name)
        for i, text in enumerate(instructions)
    )


@pytest.fixture
def data(project, tmp_path):
    """A set ``mine`` of 4 samples (the 2nd and 4th copy an eval item) and an eval file of 2 items."""
    evals = tmp_path / "eval.jsonl"
    evals.write_text("".join(json.dumps({"question": q, "answer": "42"}) + "\n" for q in (LONG, SHORT)))
    add_set(project, "mine", ["clean one", f"Q: {sentence(10, 30)}", "clean two", SHORT.upper()])
    return evals


def ids(project, name="mine"):
    return [s.id for s in project.samples(sample_set=name)]


def test_the_check_is_recorded_and_export_leaves_the_contaminated_out(project, data, tmp_path):
    report = decontaminate(project, DecontamOptions(sample_set="mine", against=(str(data),)))
    first, second, third, fourth = ids(project)
    assert (report.checked, report.flagged, report.dropped) == (4, 2, 0)
    assert [h.sample_id for h in report.examples] == [second, fourth]
    assert {h.sample_id: h.item for h in project.contamination("mine")} == {second: "row 1", fourth: "row 2"}
    (check,) = project.contamination_checks("mine")
    assert (check.source, check.items, check.checked, check.flagged) == (str(data), 2, 4, 2)

    result = export_set(project, "mine", "jsonl", tmp_path / "out" / "mine.jsonl")
    rows = [json.loads(line) for line in result.data.read_text().splitlines()]
    assert [r["id"] for r in rows] == [first, third] and result.excluded == 2
    card = result.card.read_text()
    assert "## Decontamination" in card and "2 samples found contaminated (and not dropped) were left out" in card
    assert "| 2 | 13 |" in card and "| 4 | 2 | 0 |" in card

    kept = export_set(project, "mine", "jsonl", tmp_path / "kept.jsonl", exclude_contaminated=False)
    assert kept.rows == 4 and "remain in this export" in kept.card.read_text()


def test_a_rerun_replaces_the_record_and_drop_deletes_with_counts(project, data):
    decontaminate(project, DecontamOptions(sample_set="mine", against=(str(data),)))
    report = decontaminate(project, DecontamOptions(sample_set="mine", against=(str(data),), drop=True))
    assert (report.flagged, report.dropped) == (2, 2) and len(report.examples) == 2
    assert [s.instruction for s in project.samples(sample_set="mine")] == ["clean one", "clean two"]
    assert project.contamination("mine") == []
    (check,) = project.contamination_checks("mine")
    assert (check.flagged, check.dropped) == (2, 2)
    decontaminate(project, DecontamOptions(sample_set="mine", against=(str(data),)))
    (check,) = project.contamination_checks("mine")
    assert (check.checked, check.flagged, check.dropped) == (2, 0, 2)  # the earlier deletion stays on record


def test_another_sample_set_is_an_eval_set_and_deleting_a_set_forgets_its_record(project, data):
    add_set(project, "bench", [sentence(10, 30)])
    report = decontaminate(project, DecontamOptions(sample_set="mine", against=("bench",)))
    assert [s.source for s in report.sources] == ["set:bench"] and report.flagged == 1
    project.delete_sample_set("mine")
    assert project.contamination_checks("mine") == [] and project.contamination("mine") == []


def test_the_shipped_humaneval_is_an_eval_set(project):
    from treesynth_core.data.examples import resolve
    from treesynth_core.data.readers import iter_records

    path, _ = resolve("example:humaneval")
    prompt = next(row for _, row in iter_records(path))["prompt"]
    add_set(project, "mine", ["Please solve:\n" + prompt[40:600], "write a haiku about the sea"])
    report = decontaminate(project, DecontamOptions(sample_set="mine", against=("example:humaneval",)))
    assert report.sources[0].items == 164 and report.flagged == 1
    assert report.examples[0].item == "row 1"


def test_bad_eval_sets_fail_before_anything_is_written(project, data, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("question\nyes\nno\n")
    cases = [
        ((str(tmp_path / "missing.jsonl"),), "no such file or sample set"),
        (("example:nothing",), "no example dataset 'nothing'"),
        ((str(empty),), "holds no rows"),
        ((str(tiny),), "nothing to check against"),
        (("set:mine",), "against itself"),
        ((str(data), "set:nope"), "no sample set 'nope'"),
    ]
    for against, message in cases:
        with pytest.raises(DataError, match=message):
            decontaminate(project, DecontamOptions(sample_set="mine", against=against, drop=True))
    assert len(ids(project)) == 4 and project.contamination_checks("mine") == []
    with pytest.raises(DataError, match="no samples in the set 'other'"):
        decontaminate(project, DecontamOptions(sample_set="other", against=(str(data),)))


def test_the_job_spec_reads_stored_params_and_a_stop_records_nothing(project, data):
    import asyncio
    import threading

    from treesynth_core.errors import Cancelled
    from treesynth_core.jobs.specs import JobContext, job_spec

    spec = job_spec("decontaminate")
    options = spec.parse({"sample_set": "mine", "against": [str(data)], "n": 13, "drop": True})
    assert options == DecontamOptions("mine", (str(data),), 13, None, True) and not spec.needs_llm(options)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled, match="nothing was recorded or dropped"):
        asyncio.run(spec.run(JobContext(project, lambda space: None, cancel=stop), None, options))
    assert len(ids(project)) == 4 and project.contamination_checks("mine") == []
    report = asyncio.run(spec.run(JobContext(project, lambda space: None), None, options))
    assert spec.summary(report, None) == (
        f"checked 4 samples of 'mine': 2 contaminated, 2 dropped (by eval set: {data} (2))"
    )
