"""The Synthesize page's "Run as a batch job": the calls a synthesis would make, written as Batch
JSONL files (with their count and the expected cost at the batch price), sent to the Files and
Batches endpoints of the configured base URL, followed and brought back; then Start completes from
the collected replies. Every step is a :mod:`treesynth_core.batch` function; the status table reads
the project's ``batches`` table, so it survives a reload and an app restart.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from studio import security
from studio.state import AppState
from studio.widgets import md
from treesynth_core.batch.client import client_for, settings_problem
from treesynth_core.batch.prepare import synth_requests
from treesynth_core.batch.rounds import collect_remote, progress_text, refresh, submit, write_round
from treesynth_core.errors import TreeSynthError
from treesynth_core.generate.synth import plan_synthesis
from treesynth_core.jobs.batch_fill import SYNTH_ROUND, fill_from_replies, round_params
from treesynth_core.jobs.specs import job_spec
from treesynth_core.llm.pricing import usd
from treesynth_core.llm.settings import BackendSettings
from treesynth_core.progress import plural
from treesynth_core.store import Project

#: Where the last prepare's outcome waits for the rerun that shows it.
NOTE = "batch.note"
PREPARE, SUBMIT, REFRESH, COLLECT = "batch.prepare", "batch.submit", "batch.refresh", "batch.collect"


def panel(state: AppState, project: Project, params: dict[str, Any], *, ready: bool, running: bool) -> None:
    """The expander. ``params``: the synthesis the form describes (what Start would run); ``ready``:
    whether it asks for anything; ``running``: a job holds the project (no batch step then)."""
    records = project.batches()
    with st.expander("Run as a batch job", icon=":material/inventory_2:", expanded=bool(records)):
        st.caption(
            "Send this synthesis through a Batch API (about half the online price, done within 24 hours): "
            "prepare writes its calls as files, submit sends them, collect brings the replies back and makes "
            "their samples. Synthesis runs in rounds (responses follow their samples): after collect, prepare "
            "again until nothing is left; then Start synthesis finds nothing left to send."
        )
        settings = state.settings()
        problem = settings_problem(settings)
        if problem is not None:
            st.info(f"{problem[0].upper()}{problem[1:]} (Models page).", icon=":material/info:")
            return
        st.caption(f":material/send: Batches go to {md(settings.base_url or 'https://api.openai.com/v1')}")
        if ready:
            st.caption(md(_batch_estimate(project, params, settings)))
        _show_note()
        if not security.read_only():
            _actions(state, project, params, records, ready=ready, running=running)
        _status_table(records)


def _batch_estimate(project: Project, params: dict[str, Any], settings: BackendSettings) -> str:
    """What the synthesis the form describes costs when its calls go in batches."""
    options = job_spec("synth").parse(params)
    plan = plan_synthesis(
        project.tree(), project.sample_counts(), options, model=settings.model or "", settings=settings, batch=True
    )
    cost = "an unknown price" if plan.cost_usd is None else f"about {usd(plan.cost_usd)}"
    return f"At the batch price this synthesis costs {cost} ({plural(plan.calls, 'call')} when every reply is usable)."


def _actions(
    state: AppState, project: Project, params: dict[str, Any], records: list[Any], *, ready: bool, running: bool
) -> None:
    prepared = sum(1 for r in records if r.status == "prepared")
    sent = any(r.remote_id and r.status != "collected" for r in records)
    why_not = "A job is running on this project." if running else None
    row = st.container(horizontal=True, gap="small")
    if row.button(
        "Prepare batch files",
        key=PREPARE,
        icon=":material/description:",
        disabled=running or not ready,
        help=why_not or (None if ready else "Pick the leaves first."),
    ):
        _step(lambda: _prepare(state, project, params))
    if row.button(
        f"Submit {plural(prepared, 'file')}",
        key=SUBMIT,
        icon=":material/upload:",
        disabled=running or not prepared,
        help=why_not or "Upload each prepared file and start a batch on it.",
    ):
        _step(lambda: _submit(state, project))
    if row.button("Refresh status", key=REFRESH, icon=":material/refresh:", disabled=running or not sent):
        _step(lambda: _refresh(state, project))
    if row.button(
        "Collect",
        key=COLLECT,
        icon=":material/download:",
        disabled=running or not sent,
        help=why_not or "Bring the replies of finished batches into the project (running ones are left).",
    ):
        _step(lambda: _collect(state, project))


def _step(action: Any) -> None:
    """Run one batch step; its outcome (or error) shows after the rerun."""
    try:
        with st.spinner("Working…"):
            st.session_state[NOTE] = ("success", action())
    except TreeSynthError as exc:
        st.session_state[NOTE] = ("error", str(exc))
    st.rerun()


def _show_note() -> None:
    note = st.session_state.get(NOTE)
    if note is None:
        return
    kind, text = note
    (st.error if kind == "error" else st.success)(md(text), icon=":material/inventory_2:")


def _endpoint_ok(state: AppState) -> None:
    problem = security.endpoint_problem(state)
    if problem is not None:
        raise TreeSynthError(problem)


def _prepare(state: AppState, project: Project, params: dict[str, Any]) -> str:
    settings = state.settings()
    options = job_spec("synth").parse(params)
    calls = synth_requests(project, settings, options)
    written = write_round(project, calls.requests, kind=SYNTH_ROUND, params=round_params(options))
    cost = "price unknown" if calls.cost_usd is None else f"at most ~{usd(calls.cost_usd)} at the batch price"
    if calls.cost_usd is not None and calls.run_cost_usd is not None:
        cost += f", replies at their token limit; the plan expects ~{usd(calls.run_cost_usd)} for the whole run"
    out = (
        f" {plural(written.already_out, 'request')} are out in batches not yet collected."
        if written.already_out
        else ""
    )
    if written.shards:
        return f"Prepared {plural(written.requests, 'request')} in {plural(len(written.shards), 'file')} ({cost}).{out}"
    if written.already_out:
        return f"Nothing new to prepare.{out} Collect them first."
    return "Nothing to prepare: every call this synthesis makes has its reply. Start synthesis to complete it."


def _submit(state: AppState, project: Project) -> str:
    _endpoint_ok(state)
    with client_for(state.settings()) as client:
        sent = submit(project, client)
    return f"Submitted {plural(len(sent), 'batch', 'batches')} to {client.base_url}."


def _refresh(state: AppState, project: Project) -> str:
    _endpoint_ok(state)
    with client_for(state.settings()) as client:
        records = refresh(project, client)
    running = sum(1 for r in records if r.remote_id and r.status not in ("collected", "completed"))
    return f"Status refreshed: {plural(running, 'batch', 'batches')} still running."


def _collect(state: AppState, project: Project) -> str:
    _endpoint_ok(state)
    settings = state.settings()
    with client_for(settings) as client:
        report = collect_remote(project, client, settings.model or "")
    filled = fill_from_replies(project, settings, report.rounds) if report.rounds else None
    got = report.collected
    text = (
        f"Collected {plural(got.replies, 'reply', 'replies')} ({got.known} already in the project), "
        f"{plural(got.failed, 'failed request')}."
    )
    if filled is not None:
        text += (
            f" Made {plural(filled.added, 'sample')} from them; {plural(filled.waiting, 'leaf', 'leaves')} "
            "wait for the next round."
        )
    if report.waiting:
        text += f" {plural(len(report.waiting), 'batch', 'batches')} still running: collect again later."
    else:
        text += " Next: prepare again for the next round, or Start synthesis."
    for bid, why in report.failed_batches.items():
        text += f" Batch {bid} failed: {why}."
    return text


def _status_table(records: list[Any]) -> None:
    if not records:
        st.caption("No batches yet.")
        return
    rows = [
        {
            "batch": r.id,
            "status": r.status,
            "requests": r.requests,
            "remote id": r.remote_id or "",
            "progress": progress_text(r).strip(),
            "updated": r.updated,
        }
        for r in records
    ]
    st.dataframe(rows, hide_index=True, width="stretch", key="batch.table")
