"""The dataset card's section on verification and gap filling: how the samples' answers were checked
(majority vote: k draws, agreement, rejections) and where gap filling took its few-shot examples.

:func:`generation_notes` reads what the project recorded (the per-leaf vote totals of
:mod:`~treesynth_core.generate.agreement` and the last gap-filling report); :func:`generation_section`
turns it and the exported samples into card lines. Every word here is fixed text or a number: no
model or user text reaches the card from this section.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..generate.agreement import LeafAgreement, leaf_agreement, total_agreement
from ..generate.gap_report import GapReport, last_report
from ..generate.verify import VERIFY_TEMPERATURE, VERIFY_TOP_P
from ..store.samples import Sample

GAP_ORIGIN = "fill-gaps"
SHOTS_TEXT = {
    "sparse": "the sparse clusters of the pool",
    "levels": "the pool, drawn in proportion to each sample's level (Prismatic Synthesis's released code)",
    "smallest": "the smallest 10% of the pool's clusters (Prismatic Synthesis's paper)",
}
ANSWER_TEXT = {"last-number": "the last number of the answer", "boxed": "the last `\\boxed{}` of the answer"}


@dataclass(frozen=True)
class GenerationNotes:
    """What the project recorded about verification and gap filling (both None when nothing)."""

    agreement: LeafAgreement | None = None
    gaps: GapReport | None = None


#: Nothing recorded (the default of :func:`~treesynth_core.data.export.dataset_card`).
NO_NOTES = GenerationNotes()


def generation_notes(project: Any) -> GenerationNotes:
    """The project's vote totals (over every run with verification) and last gap-filling report."""
    totals = leaf_agreement(project)
    return GenerationNotes(total_agreement(totals) if totals else None, last_report(project))


def generation_section(samples: Sequence[Sample], notes: GenerationNotes) -> list[str]:
    """The card's lines on verification and gap filling; none when the samples had neither."""
    verified = Counter(_draws(s) for s in samples if _draws(s))
    gap_samples = [s for s in samples if s.extra.get("origin") == GAP_ORIGIN]
    if not verified and not gap_samples:
        return []
    lines = ["## Verification and gap filling", ""]
    if verified:
        k = ", ".join(str(draws) for draws in sorted(verified))
        lines.append(
            f"- Majority-vote verification: {sum(verified.values())} samples were kept only because a strict "
            f"majority of {k} independent answers (temperature {VERIFY_TEMPERATURE}, top_p {VERIFY_TOP_P}) agreed "
            "on the final answer (numbers compared numerically); their response is one of the agreeing answers."
        )
        if notes.agreement is not None and notes.agreement.votes:
            a = notes.agreement
            lines.append(
                f"- Over all verified runs of the project, {a.verified} of {a.votes} questions agreed "
                f"({a.rate:.0%}) and {a.rejected} were rejected (not in the data)."
            )
    if gap_samples:
        rounds = len({s.extra.get("round") for s in gap_samples})
        lines.append(
            f"- Gap filling (Prismatic Synthesis, arXiv 2505.20161): {len(gap_samples)} samples from {rounds} "
            "rounds, kept because they landed in sparse clusters of the pool's feature space."
        )
        report = notes.gaps
        if report is not None:
            lines.append(
                f"- Last gap-filling run: {report.accepted} of {report.candidates} candidates kept "
                f"({report.acceptance_rate:.0%}); few-shot examples from "
                f"{SHOTS_TEXT.get(report.shots_from, 'the sparse clusters of the pool')}"
                + (
                    f"; verified by {report.verify} answers each, final answer read as "
                    f"{ANSWER_TEXT.get(report.answer, 'the last number of the answer')}: {report.verified} agreed, "
                    f"{report.rejected} rejected."
                    if report.verify
                    else "."
                )
            )
    return [*lines, ""]


def _draws(sample: Sample) -> int:
    """The draws of the vote that kept the sample (its ``extra["verified"]``, "agree/k"), or 0."""
    mark = str(sample.extra.get("verified", ""))
    _, _, k = mark.partition("/")
    return int(k) if k.isdigit() else 0
