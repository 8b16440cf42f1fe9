"""The Coverage page's *Sample sets* part: the diversity of any sample sets side by side at equal n
(the tree's samples, a concepts set, an import, a balanced set), with
:func:`~treesynth_core.coverage.report.compare_sets`.

Like the Data page's before/after scores (:mod:`studio.balance_panel`), the embeddings are computed
here, on a click, with the embedded embedder (a job's stored features are reused, and new ones are
stored), and the scores are cached while the sets' sizes are unchanged; G-Vendi comes only from
gradient features already stored (never computed here: slow).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from studio.coverage_panel import FeaturesMissing, StoredFeatures, stored_kind
from studio.widgets import md
from treesynth_core.coverage import SCORES
from treesynth_core.errors import TreeSynthError
from treesynth_core.jobs import background as jobs
from treesynth_core.store import Project
from treesynth_core.store.samples import BASELINE_SET, TREE_SET


def scorable_sets(project: Project) -> list[str]:
    """The sets with 2 or more samples (the tree's first, the flat baseline last)."""
    sets = {name: n for name, n in project.sample_sets().items() if n >= 2}
    order = sorted(sets, key=lambda name: (name != TREE_SET, name == BASELINE_SET, name))
    return order


@st.cache_data(show_spinner=False, max_entries=16)
def _scores(_project: Project, key: tuple[Any, ...], names: tuple[str, ...], seed: int) -> dict[str, Any]:
    from treesynth_core.coverage.report import compare_sets

    sets = {name: _project.samples(sample_set=name) for name in names}
    embedder = jobs.featurizer("embeddings")
    grads = stored_kind(_project, "gradients")
    if grads:
        try:
            return compare_sets(_project, sets, embedder=embedder, gradient_featurizer=StoredFeatures(grads), seed=seed)
        except FeaturesMissing:
            pass
    return compare_sets(_project, sets, embedder=embedder, seed=seed)


def set_scores(project: Project, names: Sequence[str], *, seed: int = 0) -> dict[str, Any]:
    """The scores of ``names`` at equal n; cached while their sizes are unchanged."""
    sizes = project.sample_sets()
    key = (str(project.path), tuple((name, sizes.get(name, 0)) for name in names))
    return _scores(project, key, tuple(names), int(seed))


def scores_table(scores: dict[str, Any]) -> dict[str, list[str]]:
    """One row per score, one column per set (a dash where a score is missing)."""
    table = {"score": [label for label, _ in SCORES]}
    for name, row in scores["sets"].items():
        table[name] = [_fmt(row.get(key)) for _, key in SCORES]
    return table


def _fmt(value: Any) -> str:
    return "\u2013" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def sets_section(project: Project, *, default: Sequence[str] = ()) -> None:
    """Pick sets, score them on a click, show the table."""
    names = scorable_sets(project)
    if len(names) < 1:
        st.caption("No sample set has 2 or more samples yet.")
        return
    st.caption(
        "Any sample sets side by side (the tree's samples, a Concepts set, an import), each on a seeded "
        "subsample of the same size. Embeddings are computed on a click (MiniLM, on this machine) and kept."
    )
    picked = [n for n in default if n in names] or names[:2]
    chosen = st.multiselect("Sample sets", names, default=picked, key="coverage.sets")
    if st.button("Score these sets", key="coverage.sets.score", icon=":material/leaderboard:", disabled=not chosen):
        st.session_state["coverage.sets.scored"] = list(chosen)
    scored = st.session_state.get("coverage.sets.scored")
    if not scored or list(chosen) != scored:
        return
    try:
        with st.spinner("Embedding and scoring\u2026"):
            scores = set_scores(project, scored)
    except TreeSynthError as exc:
        st.error(md(str(exc)), icon=":material/error:")
        return
    st.dataframe(scores_table(scores), key="coverage.sets.table", hide_index=True)
    for note in scores.get("notes", []):
        st.caption(md(note))
