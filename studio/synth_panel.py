"""The Synthesize page's parts: leaf choice, the estimate, live counts and the sample browser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

from studio import graph as G
from studio import security
from studio.widgets import md, model_name
from treesynth_core.generate.synth import (
    PER_CALL,
    SAMPLED_SCALE,
    SynthOptions,
    SynthPlan,
    leaf_target,
    plan_synthesis,
    sampled_steps,
)
from treesynth_core.llm import timing
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.progress import plural
from treesynth_core.store import Project
from treesynth_core.store.samples import Sample
from treesynth_core.store.trash import Deletion
from treesynth_core.tree import model as T

SCOPE, SUBTREE, PICKED = "synth.scope", "synth.subtree", "synth.picked"
PER_LEAF, PER_CALL_KEY, KIND, SEED = "synth.per_leaf", "synth.per_call", "synth.kind", "synth.seed"
SCALE = "synth.sampled_scale"
SCOPES = {"all": "All approved leaves", "subtree": "Leaves under one node", "picked": "Leaves I pick"}
KINDS = {"instruction": "Instructions only", "pair": "Instruction + response"}
#: The form's first values. They are set through the session state, never as a widget's default too:
#: a running job's choices are set there (see :func:`choose`), and a widget given both warns.
FORM_DEFAULTS = {PER_LEAF: 10, PER_CALL_KEY: PER_CALL, SEED: 0, SCALE: SAMPLED_SCALE}


@dataclass(frozen=True)
class Choice:
    """What the form asks for."""

    leaf_ids: tuple[str, ...]
    per_leaf: int
    per_call: int
    responses: bool
    empty: bool = False
    seed: int = 0
    sampled_scale: int = SAMPLED_SCALE

    def params(self) -> dict:
        return {
            "per_leaf": self.per_leaf,
            "per_call": self.per_call,
            "responses": self.responses,
            "leaf_ids": list(self.leaf_ids),
            "seed": self.seed,
            "sampled_scale": self.sampled_scale,
        }


def choose(tree: T.Tree, running: Mapping[str, Any] | None = None) -> Choice:
    """Which leaves, how many samples, and what kind. ``running``: the params of the synthesis job
    now running, which the form shows (disabled) instead of what this session last chose, so a
    reload during a run shows the run, not the defaults."""
    approved = tree.leaves(approved_only=True)
    locked = running is not None
    if running is not None:
        st.session_state.update(form_values(tree, running))
    for key, value in FORM_DEFAULTS.items():
        st.session_state.setdefault(key, value)
    scope = st.radio("Leaves", list(SCOPES), format_func=SCOPES.get, key=SCOPE, horizontal=True, disabled=locked)
    leaf_ids: tuple[str, ...] = ()
    empty = False
    if scope == "subtree":
        inner = [n.id for n in tree.subtree(tree.root_id) if tree.children(n.id) and tree.is_active(n.id)]
        chosen = st.selectbox(
            "Node",
            inner,
            key=SUBTREE,
            format_func=lambda i: G.option_label(tree, i),
            placeholder="Pick a node",
            disabled=locked,
        )
        leaf_ids = (chosen,) if chosen else ()
        empty = not chosen
    elif scope == "picked":
        picked = st.multiselect(
            "Leaves",
            [leaf.id for leaf in approved],
            key=PICKED,
            format_func=lambda i: G.shorten(G.path_text(tree, i), 90),
            placeholder="Type to search the approved leaves",
            disabled=locked,
        )
        leaf_ids = tuple(picked)
        empty = not picked
    left, mid, seed_col, right = st.columns([1, 1, 1, 2])
    per_leaf = left.number_input("Samples per leaf", 1, 10_000, key=PER_LEAF, disabled=locked)
    per_call = mid.number_input(
        "Samples per call",
        1,
        20,
        key=PER_CALL_KEY,
        disabled=locked,
        help="How many samples one LLM call is asked for (the paper's 10).",
    )
    seed = seed_col.number_input(
        "Seed",
        0,
        1_000_000,
        key=SEED,
        disabled=locked,
        help="The same seed asks the same questions again (served from the cache). Another seed asks new "
        "ones: use it to top up leaves a run left short.",
    )
    kind = right.radio("Each sample is", list(KINDS), format_func=KINDS.get, key=KIND, horizontal=True, disabled=locked)
    scale = SAMPLED_SCALE
    if any(sampled_steps(tree.path(leaf.id)) for leaf in approved):
        scale = st.number_input(
            "Samples x per sampled node",
            1,
            100,
            key=SCALE,
            disabled=locked,
            help="A leaf under k sampled nodes gets samples per leaf times this to the power k, each sample with "
            "its own draw of the sampled values (the paper: 10).",
        )
    return Choice(leaf_ids, int(per_leaf), int(per_call), kind == "pair", empty, int(seed), int(scale))


def form_values(tree: T.Tree, params: Mapping[str, Any]) -> dict[str, Any]:
    """The form's widget values (by key) that ask for what a synthesis job with ``params`` does."""
    leaf_ids = [i for i in params.get("leaf_ids") or () if i in tree.nodes]
    values: dict[str, Any] = {
        PER_LEAF: int(params.get("per_leaf") or 10),
        PER_CALL_KEY: int(params.get("per_call") or PER_CALL),
        KIND: "pair" if params.get("responses") else "instruction",
        SEED: int(params.get("seed") or 0),
        SCALE: int(params.get("sampled_scale") or SAMPLED_SCALE),
        SCOPE: "all",
    }
    if len(leaf_ids) == 1 and tree.children(leaf_ids[0]):
        values.update({SCOPE: "subtree", SUBTREE: leaf_ids[0]})
    elif leaf_ids:
        approved = {leaf.id for leaf in tree.leaves(approved_only=True)}
        values.update({SCOPE: "picked", PICKED: [i for i in leaf_ids if i in approved]})
    return values


def estimate(project: Project, tree: T.Tree, choice: Choice, settings: BackendSettings) -> SynthPlan:
    options = SynthOptions(
        per_leaf=choice.per_leaf,
        per_call=choice.per_call,
        responses=choice.responses,
        leaf_ids=choice.leaf_ids,
        sampled_scale=choice.sampled_scale,
    )
    return plan_synthesis(tree, project.sample_counts(), options, model=model_name(settings), settings=settings)


def calls_left(plan: SynthPlan, *, responses: bool) -> timing.CallsLeft:
    """The calls the plan still makes, for the time left of a running synthesis."""
    return timing.CallsLeft(timing.synth_purposes(responses), plan.calls)


def run_time(plan: SynthPlan, project: Project, settings: BackendSettings, *, responses: bool) -> timing.TimeRange:
    """How long the plan's calls take, from this project's call log (see :mod:`treesynth_core.llm.timing`)."""
    return timing.estimate_time(project, settings, timing.synth_purposes(responses), plan.calls)


def show_estimate(plan: SynthPlan, project: Project, settings: BackendSettings, *, responses: bool) -> None:
    took = run_time(plan, project, settings, responses=responses)
    cols = [*st.columns(3), *st.columns(3)]  # two rows: six cards in one row cut their values off below ~1500 px
    cols[0].metric("Leaves", len(plan.leaves), border=True)
    cols[1].metric("Samples to make", plan.samples, border=True)
    calls_help = (
        f"About this many when the model's replies are usable and new; up to {plan.calls_max:,} with "
        "re-asks and extra calls for duplicates. Cached replies are free."
    )
    cols[2].metric("LLM calls", f"{plan.calls:,}", border=True, help=calls_help)
    tokens = plan.prompt_tokens + plan.completion_tokens
    cols[3].metric("Tokens", compact(tokens), border=True, help=f"About {tokens:,} tokens in and out.")
    cost = "free" if settings.backend == "embedded" else _money(plan.cost_usd)
    cost_help = (
        "The embedded model runs on this machine."
        if settings.backend == "embedded"
        else ("From the model's price per million tokens (set `prices` in the settings for other models).")
    )
    cols[4].metric("Cost (about)", cost, border=True, help=cost_help)
    cols[5].metric("Time", took.short(), border=True, help=time_help(took))  # short: a long range is cut off
    note = plan.scaling_note()
    st.caption(
        f"On {md(plan.model)}. Time {md(took.text())}. Leaves that already have enough samples are skipped; "
        "cached replies are free." + (f" {md(note[:1].upper() + note[1:])}." if note else "")
    )


def time_help(took: timing.TimeRange) -> str:
    """The help of a time card: the range in full and what it rests on."""
    if took.guess:
        return (
            f"{took.span()}. No calls yet: a guess for this backend. Later estimates use this project's own call times."
        )
    return (
        f"{took.span()}: the middle half of this project's recent call times ({took.basis}), "
        "times the calls, over the calls that run at once."
    )


def compact(n: int) -> str:
    """A count short enough for a metric card: 950, 12.3k, 118k, 4.2M."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size:
            value = n / size
            return f"{value:.1f}{suffix}" if value < 100 else f"{value:,.0f}{suffix}"
    return str(n)


def _money(value: float | None) -> str:
    return "unknown price" if value is None else f"${value:,.2f}"


def leaf_counts(project: Project, tree: T.Tree, leaf_ids: list[str], per_leaf: int, sampled_scale: int | None) -> None:
    """Samples per leaf against its target (scaled by the sampled nodes on its path): the live table
    while a run goes on."""
    options = SynthOptions(per_leaf=max(1, per_leaf), sampled_scale=sampled_scale or SAMPLED_SCALE)
    counts = project.sample_counts()
    rows = [
        {
            "leaf": G.path_text(tree, leaf_id),
            "samples": counts.get(leaf_id, 0),
            "progress": min(1.0, counts.get(leaf_id, 0) / leaf_target(tree.path(leaf_id), options)),
        }
        for leaf_id in leaf_ids
        if leaf_id in tree.nodes
    ]
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        height=min(420, 38 + 35 * max(1, len(rows))),
        column_config={
            "leaf": st.column_config.TextColumn("Leaf (path)", width="large"),
            "samples": st.column_config.NumberColumn("Samples", format="%d"),
            "progress": st.column_config.ProgressColumn("Of target", min_value=0.0, max_value=1.0, format="percent"),
        },
    )


def browser(project: Project, tree: T.Tree) -> None:
    """Browse one leaf's samples and delete bad ones."""
    counts = project.sample_counts()
    with_samples = [leaf.id for leaf in tree.leaves() if counts.get(leaf.id)]
    orphans = [leaf_id for leaf_id in counts if leaf_id not in tree.nodes]
    if not with_samples and not orphans:
        st.caption("No samples yet.")
        return
    options = with_samples + orphans
    leaf_id = st.selectbox(
        "Leaf",
        options,
        key="samples.leaf",
        format_func=lambda i: G.shorten(G.path_text(tree, i), 90) if i in tree.nodes else f"(removed leaf {i})",
    )
    if leaf_id is None:
        return
    # the count beside the picker, not in its options: a browser sends the choice back as its text, so
    # a choice whose count changed (samples deleted) would jump back to the first leaf
    st.caption(f"{plural(counts.get(leaf_id, 0), 'sample')} in this leaf")
    samples = project.samples(leaf_id=leaf_id)
    columns = {
        "id": st.column_config.NumberColumn("#", width="small"),
        "instruction": st.column_config.TextColumn("Instruction", width="large"),
    }
    if any(s.response for s in samples):  # instruction-only samples: no empty Response column
        columns["response"] = st.column_config.TextColumn("Response", width="medium")
    st.dataframe(
        [{"id": s.id, "instruction": s.instruction, "response": s.response or ""} for s in samples],
        hide_index=True,
        width="stretch",
        column_order=list(columns),
        column_config=columns,
    )
    delete_samples(project, leaf_id, {s.id: s for s in samples})


UNDO_DELETE = "samples.undo_delete"


def delete_samples(project: Project, leaf_id: str, by_id: dict[int, Sample]) -> None:
    """Pick samples to delete (none at first, no "select all"), confirm with their count, and undo
    the latest delete of this session."""
    picker = f"samples.delete.{leaf_id}"
    doomed = st.multiselect(
        "Samples to delete",
        list(by_id),
        key=picker,
        format_func=lambda i: f"#{i}: {G.shorten(by_id[i].instruction, 80)}",
        placeholder="Pick bad samples to delete",
        select_all=False,
    )
    locked = security.read_only()  # shared read-only: samples are not deleted
    left, right, _ = st.columns([1, 1, 2])
    with left.popover(
        "Delete selected",
        icon=":material/delete:",
        disabled=not doomed or locked,
        width="stretch",
        key=CONFIRM,
        on_change="rerun",
    ):
        st.markdown(
            f"Delete **{plural(len(doomed), 'sample')}** of this leaf? A later run will not make them "
            "again. You can undo the delete right after."
        )
        st.button(
            f"Delete {plural(len(doomed), 'sample')}",
            key="samples.delete",
            type="primary",
            disabled=not doomed,
            on_click=_delete,
            args=(project, picker, doomed),
        )
    last = st.session_state.get(UNDO_DELETE)
    if isinstance(last, Deletion) and last.count:
        right.button(
            f"Undo delete ({plural(last.count, 'sample')})",
            key="samples.undo",
            icon=":material/undo:",
            disabled=locked,
            width="stretch",
            on_click=_restore,
            args=(project, last),
        )


CONFIRM = "samples.confirm"


def _delete(project: Project, picker: str, doomed: list[int]) -> None:
    """The confirmed delete (a callback, so the picker and the confirmation can be reset)."""
    gone = project.trash_samples(doomed)
    st.session_state[picker] = []
    st.session_state[CONFIRM] = False
    st.session_state[UNDO_DELETE] = gone
    st.toast(f"Deleted {plural(gone.count, 'sample')}.", icon=":material/delete:")


def _restore(project: Project, deletion: Deletion) -> None:
    back = project.restore_samples(deletion.batch)
    st.session_state.pop(UNDO_DELETE, None)
    st.toast(f"Restored {plural(back, 'sample')}.", icon=":material/undo:")
