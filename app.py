"""TreeSynth Studio: the app's frame. Run with `make app` (or `streamlit run app.py`).

It sets up the navigation over the page files in `app_pages/`, reopens the project named in the URL,
and shows the open project and its backend in the sidebar. The pages do the rest.

The folder is not called `pages/` on purpose: Streamlit treats a `pages/` folder beside the main
script as a legacy multipage app until `st.navigation` has run once in the process, so a deep link
right after a server start (or every AppTest run) would execute a page file without this frame.
"""

from __future__ import annotations

import streamlit as st

from studio import security
from studio.state import get_state, sync_url
from studio.widgets import PAGE_EXPORT, PAGE_PROJECT, PAGE_SYNTH, PAGE_TREE, md

st.set_page_config(page_title="TreeSynth Studio", page_icon="\U0001f333", layout="wide")

# Less empty space above each page: the graph and the editor should fit on one screen.
st.html("<style>[data-testid='stMainBlockContainer'] { padding-top: 2.2rem; }</style>")

state = get_state()
sync_url(state)

# The "Dataset" section: synthesize, measure coverage, bring your own data (import, route, rebalance,
# scaling), export.
PAGES = {
    "Build": [
        st.Page(
            PAGE_PROJECT,
            title="Project",
            icon=":material/folder_open:",
            url_path="project",
            # Always the default (served at "/"): a page that is the default has no address of its own,
            # so making the Tree page the default while a project is open broke links to /tree?project=...
            default=True,
        ),
        st.Page(
            PAGE_TREE,
            title="Tree",
            icon=":material/account_tree:",
            url_path="tree",
        ),
    ],
    "Dataset": [
        st.Page(PAGE_SYNTH, title="Synthesize", icon=":material/auto_awesome:", url_path="synthesize"),
        st.Page("app_pages/concepts.py", title="Concepts", icon=":material/hub:", url_path="concepts"),
        st.Page("app_pages/coverage.py", title="Coverage", icon=":material/scatter_plot:", url_path="coverage"),
        st.Page("app_pages/data.py", title="Data", icon=":material/dataset:", url_path="data"),
        st.Page(PAGE_EXPORT, title="Export", icon=":material/download:", url_path="export"),
    ],
}
page = st.navigation(PAGES)

with st.sidebar:
    st.markdown("### :material/account_tree: TreeSynth Studio")
    st.caption("Grow a tree that splits your task's data space, review it, then synthesize leaf by leaf.")
    project = state.project()
    if project is not None:
        tree = project.tree()
        with st.container(border=True):
            st.markdown(f"**{md(state.project_name)}**")
            st.caption(md(tree.task))
            st.caption(f":material/memory: {md(state.settings().describe())}")
            security.endpoint_notice(state)
    else:
        st.info("No project open.", icon=":material/folder_off:")

security.exposure_banner()
page.run()
