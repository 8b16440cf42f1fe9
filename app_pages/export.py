"""Export page: the samples as JSONL (chat messages), Parquet or a Hugging Face dataset folder,
each with the tree JSON and a generated dataset card, ready to download."""

from __future__ import annotations

import streamlit as st

from studio import exports
from studio.report_panel import report_panel
from studio.state import get_state
from studio.widgets import PAGE_SYNTH, md, require_project, show_notices
from treesynth_core.data.export import to_rows
from treesynth_core.errors import TreeSynthError

FORMATS = {
    "jsonl": "JSONL (chat messages)",
    "parquet": "Parquet",
    "hf": "Hugging Face dataset folder (save_to_disk)",
}

state = get_state()
project = require_project(state)
st.title("Export")
st.caption(
    "Every row carries the chat `messages`, the instruction and response, the leaf's path and one "
    "column per criterion. The tree JSON and a dataset card go beside the data."
)
show_notices(state)

tree = project.tree()
sets = project.sample_sets()
sample_set = "tree"
if len(sets) > 1 or (sets and "tree" not in sets):
    names = list(sets)
    sample_set = st.selectbox(
        "Sample set",
        names,
        index=names.index("tree") if "tree" in names else 0,
        key="export.set",
        format_func=exports.set_label,
        help="tree: leaf synthesis; baseline: the flat baseline; others: imported or rebalanced datasets "
        "(each row's provenance column says original or synthesized).",
    )
samples = project.samples(sample_set=sample_set)
counts = project.sample_counts(sample_set=sample_set)
cols = st.columns(3)
cols[0].metric("Samples", len(samples), border=True)
cols[1].metric("Leaves with samples", sum(1 for leaf_id in counts if leaf_id in tree.nodes), border=True)
cols[2].metric("With responses", sum(1 for s in samples if s.response), border=True)
if not samples:
    st.info("There are no samples to export yet.", icon=":material/info:")
    st.page_link(PAGE_SYNTH, label="Go to the Synthesize page", icon=":material/auto_awesome:")
    st.stop()

without = sum(1 for s in samples if not s.response)
if 0 < without:
    st.caption(
        f":orange[:material/warning:] {without:,} of {len(samples):,} rows have no response (instructions only): their "
        "`messages` hold only the user turn. Synthesize with responses (or rebalance with 'Also write responses') "
        "for instruction-response pairs."
    )

contaminated = len({hit.sample_id for hit in project.contamination(sample_set)})
with st.container(border=True):
    keep = False
    st.caption(md(exports.decontamination_report(project, sample_set)))
    if contaminated:
        st.caption(
            f":orange[:material/rule:] {contaminated:,} samples of this set were found in an eval set "
            "(Data page, Decontaminate): the export leaves them out, and the dataset card says so."
        )
        keep = st.checkbox("Keep the contaminated samples", key="export.keep_contaminated")
    fmt = st.radio("Format", list(FORMATS), format_func=FORMATS.get, key="export.format", horizontal=True)
    suffix = "dataset" if sample_set == "tree" else sample_set
    name = st.text_input("File name", value=f"{state.project_name}-{suffix}", key=f"export.name.{sample_set}")
    if st.button("Export", key="export.run", type="primary", icon=":material/file_export:"):
        try:
            with st.spinner("Writing the dataset\u2026"):
                result = exports.run_export(project, fmt, name, sample_set, exclude_contaminated=not keep)
        except TreeSynthError as exc:
            st.error(md(str(exc)), icon=":material/error:")
        else:
            state.last_export = result

result = state.last_export
if result is not None and result.data.exists() and result.data.is_relative_to(project.path):
    st.success(f"Wrote {result.rows} rows to {md(str(result.data))}", icon=":material/check_circle:")
    buttons = st.columns(3)
    for col, item in zip(buttons, exports.downloads(result), strict=False):
        col.download_button(
            f"Download {item.label.lower()}",
            item.data,
            file_name=item.name,
            mime=item.mime,
            key=f"export.download.{item.label}",
            icon=":material/download:",
            width="stretch",
        )
    with st.expander("Dataset card", icon=":material/description:"):
        st.markdown(result.card.read_text(encoding="utf-8").split("---", 2)[-1])

with st.expander("Preview the first rows", icon=":material/table:"):
    st.dataframe(to_rows(samples[:50]), hide_index=True, width="stretch")

report_panel(state, project)
