"""The node editor's "Values from the concept graph": the topics (or key concepts) of the project's
documents most associated with the selected node's path (:func:`~treesynth_core.concepts.propose.propose_values`),
an alternative to the LLM's coverage step, added as proposed values through the normal edit (one
undoable ``propose-values`` edit, reviewed like grown values).

Shown only when the project has concepts. Labels come from documents or an LLM: they reach the
page through ``st.dataframe`` and :func:`md`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import streamlit as st

from studio import actions as A
from studio.widgets import md
from treesynth_core.concepts.model import DocConcepts
from treesynth_core.concepts.propose import DEFAULT_CRITERION, DEFAULT_K, KINDS, Proposal, propose_values
from treesynth_core.concepts.store import CONCEPTS_KEY, concepts_of
from treesynth_core.errors import TreeSynthError
from treesynth_core.store import Project
from treesynth_core.tree import model as T

KIND_LABELS = {"topic": "Topics", "concept": "Key concepts"}
DOCS_SHOWN = 5  # supporting documents named per value


def key(name: str, node_id: str) -> str:
    return f"edit.cg_{name}.{node_id}"


@st.cache_data(max_entries=8, show_spinner=False)
def _concepts(_blob: bytes | None, digest: str) -> list[DocConcepts]:
    return concepts_of(_blob)


@st.cache_data(max_entries=32, show_spinner=False)
def _proposal(
    _tree: T.Tree, _docs: Sequence[DocConcepts], key: tuple, node_id: str, k: int, kind: str, criterion: str
) -> Proposal | str:
    """The proposal, or why there is none; cached by ``key``: the concepts' digest and what of the tree
    it reads (the node's criterion, path and children), so the Tree page's reruns do not recompute it."""
    try:
        return propose_values(_tree, node_id, _docs, k=k, kind=kind, criterion=criterion)  # type: ignore[arg-type]
    except TreeSynthError as exc:
        return str(exc)


def section(project: Project, tree: T.Tree, node: T.Node) -> None:
    """The expander under the Values tab (nothing when the project has no concepts)."""
    blob = project.get_blob(CONCEPTS_KEY)
    digest = hashlib.sha1(blob or b"").hexdigest()
    docs = _concepts(blob, digest) if blob else []
    if not docs:
        return
    nid = node.id
    with st.expander("Values from the concept graph", icon=":material/hub:"):
        st.caption(
            "The topics or key concepts of the documents whose labels share words with this node's path, "
            "scored by how many of them name it times log(1 + N / the documents naming it, of all N); those on the "
            "path are left out. Added as proposed values, to review like grown ones."
        )
        c1, c2 = st.columns([2, 1])
        kind = c1.radio("Propose", KINDS, format_func=KIND_LABELS.get, key=key("kind", nid), horizontal=True)
        k = int(c2.number_input("How many", 1, 50, DEFAULT_K, key=key("k", nid)))
        criterion = st.text_input(
            "Criterion of the values", key=key("criterion", nid), placeholder=DEFAULT_CRITERION[str(kind)]
        )
        reads = (
            digest,
            node.split_criterion,
            tuple(s.value for s in tree.path(nid)),
            tuple(c.value for c in tree.children(nid)),
        )
        proposal = _proposal(tree, docs, reads, nid, k, str(kind), criterion)
        if isinstance(proposal, str):
            st.info(md(proposal), icon=":material/info:")
            return
        _candidates(proposal)
        replaces = node.split_criterion and T.normalize(node.split_criterion) != T.normalize(proposal.criterion)
        if replaces:
            st.caption(md(f"This replaces the split on {node.split_criterion} (its subtree goes; undo restores it)."))
        st.button(
            "Add as proposed values",
            key="edit.concept_values",
            on_click=A.edit,
            disabled=node.locked,
            icon=":material/playlist_add:",
            args=(
                "propose-values",
                f"{len(proposal.candidates)} values proposed from the concept graph: review them.",
                {"node_id": nid, "criterion": proposal.criterion, "values": proposal.values},
            ),
        )


def _candidates(proposal: Proposal) -> None:
    st.caption(f"From {proposal.matched:,} of {proposal.total:,} documents; criterion {md(proposal.criterion)}.")
    st.dataframe(
        {
            "value": proposal.values,
            "score": [round(c.score, 2) for c in proposal.candidates],
            "documents": [_docs(c.documents) for c in proposal.candidates],
        },
        hide_index=True,
        width="stretch",
    )


def _docs(doc_ids: Sequence[str]) -> str:
    more = len(doc_ids) - DOCS_SHOWN
    return ", ".join(doc_ids[:DOCS_SHOWN]) + (f" (+{more})" if more > 0 else "")
