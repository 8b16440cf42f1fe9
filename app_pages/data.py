"""Data page: bring your own data. Import a dataset as a sample set, route it into the tree's leaves,
rebalance it over the leaves, check a set against evaluation sets (decontamination), and fit the
SynthLLM scaling law to see where more data stops paying.

Import, routing, rebalancing and growing a tree from the data run as background jobs; the page shows
what the project store holds and polls while a job runs. The scaling fit is pure computation.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from studio import balance_panel, data_panel, route_panel, scaling_panel, security
from studio.job_view import job_status_fragment, start_job
from studio.state import get_state
from studio.widgets import PAGE_DATA, PAGE_EXPORT, PAGE_TREE, md, require_project
from treesynth_core.data import pipeline as data_steps
from treesynth_core.data.decontam_options import MIN_WORDS, DecontamOptions
from treesynth_core.data.ingest import FORMATS
from treesynth_core.errors import DataError, TreeSynthError
from treesynth_core.jobs import background as jobs
from treesynth_core.scaling.points import METRIC_LABEL, PointsError, infer_metric_kind, parse_points
from treesynth_core.store.samples import dataset_set_problem

state = get_state()
project = require_project(state)
busy = jobs.active_job(project) is not None

st.title("Data")
st.caption(
    "Bring your own data: import a dataset, route it into the tree's leaves, rebalance it over the "
    "leaves, and find where more data stops paying."
)


def _start(kind: jobs.Kind, params: dict) -> None:
    if start_job(state, kind, params, page=PAGE_DATA):
        st.rerun()


def _use_example() -> None:
    st.session_state["data.path"] = data_panel.EXAMPLE_SPEC


job_status_fragment(
    state,
    busy,
    page=PAGE_DATA,
    progress=data_panel.job_progress,
    outcome=data_panel.job_outcome,
)
sets = project.sample_sets()
datasets = data_panel.dataset_names(sets, balanced=data_panel.balanced_sets(project))
tree = project.tree()
tab_import, tab_route, tab_balance, tab_decontam, tab_scale = st.tabs(
    ["Import", "Route", "Rebalance", "Decontaminate", "Scaling (SynthLLM)"]
)

# -- import ---------------------------------------------------------------------------------------
with tab_import:
    st.caption(
        "JSONL, JSON, CSV/TSV (also gzipped) or Parquet; a Hugging Face dataset folder by its path. "
        "All rows or none: a bad row anywhere imports nothing."
    )
    uploaded = st.file_uploader("Upload a dataset file", type=data_panel.UPLOAD_TYPES, key="data.upload", disabled=busy)
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    typed = data_panel.local_path(
        left,
        "\u2026or a path on this machine (big files, Hugging Face dataset folders)",
        key="data.path",
        placeholder="/data/train.jsonl.gz or ~/datasets/my_set",
    )
    right.button(
        data_panel.EXAMPLE_LABEL,
        key="data.example",
        icon=":material/dataset:",
        on_click=_use_example,
        width="stretch",
        help=f"{data_panel.EXAMPLE.title}. Licence: {data_panel.EXAMPLE.licence}.",
    )
    path, example = None, None
    try:
        if typed.strip():
            path, example = data_panel.resolve_source(typed)
            if uploaded is not None:
                st.caption("Using the path above; clear it to import the uploaded file.")
        elif uploaded is not None:
            path = data_panel.stage_upload(project, uploaded)
    except (TreeSynthError, OSError) as exc:
        st.error(md(str(exc)), icon=":material/error:")
    if example is not None:
        st.caption(
            md(
                f"{example.title}. Licence: {example.licence}. Source: {example.source}. It pairs with the "
                f"example tree {example.tree.removesuffix('.json')} (open it on the Project page)."
            )
        )

    if path is not None:
        c1, c2, c3 = st.columns(3, vertical_alignment="bottom")
        picked = c1.selectbox(
            "Format",
            [data_panel.FORMAT_FROM_NAME, *FORMATS],  # a real option, never None (see NO_COLUMN)
            key="data.format",
        )
        fmt = None if picked == data_panel.FORMAT_FROM_NAME else picked
        encoding = c2.text_input("Encoding", "utf-8", key="data.encoding")
        skip_empty = c3.checkbox(
            "Skip rows with an empty instruction",
            key="data.skip_empty",
            help="Count and skip them instead of stopping the import.",
        )
        try:
            seen = data_panel.load_preview(path, fmt, encoding)
        except (TreeSynthError, OSError, LookupError) as exc:
            st.error(md(str(exc)), icon=":material/error:")
            seen = None
        if seen is not None:
            st.caption(
                md(
                    f"{path.name}: {seen.format}, {seen.total_bytes:,} bytes; {len(seen.columns)} columns: "
                    f"{', '.join(seen.columns)}. The first {len(seen.rows)} rows:"
                )
            )
            st.dataframe(data_panel.preview_table(seen), key="data.preview", hide_index=True, width="stretch")
            cmap = data_panel.mapping_widgets(
                seen, data_panel.initial_map(seen, example), data_panel.source_token(path, fmt), disabled=busy
            )
            n1, n2 = st.columns([3, 1], vertical_alignment="bottom")
            name = n1.text_input("New sample set", "imported", key="data.set_name").strip()
            problem = data_panel.set_name_problem(name, sets)
            try:
                cmap.check()
            except DataError as exc:
                problem = problem or str(exc)
            if n2.button(
                "Import",
                key="data.import",
                type="primary",
                icon=":material/upload:",
                disabled=busy or problem is not None,
                width="stretch",
            ):
                _start(
                    "import",
                    data_panel.import_params(
                        path, cmap, sample_set=name, encoding=encoding, skip_empty=skip_empty, fmt=fmt
                    ),
                )
            data_panel.job_outcome(project, jobs.latest_job(project), imports=True)  # first, before the form's warnings
            if problem:
                st.caption(f":orange[:material/warning: {md(problem)}]")
    else:
        data_panel.job_outcome(project, jobs.latest_job(project), imports=True)

    st.subheader("Sample sets")
    if not sets:
        st.info(
            "The project has no samples yet: import a dataset above, or synthesize on the Synthesize page.",
            icon=":material/info:",
        )
    else:
        data_panel.sets_table(sets)
        for name in datasets:
            a, b = st.columns([5, 1], vertical_alignment="center")
            a.markdown(f"**{md(name)}** \u2014 {sets[name]:,} samples")
            with b.popover("Delete", icon=":material/delete:", disabled=busy or security.read_only(), width="stretch"):
                st.markdown(
                    f"Delete the sample set **{md(name)}**: its {sets[name]:,} samples, their features and "
                    "routes? The imported file is not touched."
                )
                if st.button("Delete for good", key=f"data.delete.{name}", type="primary"):
                    gone = project.delete_sample_set(name)
                    state.notify("success", f"Deleted the sample set {name} ({gone:,} samples).")
                    st.rerun()
        with st.expander("First rows of a set", icon=":material/table:"):
            shown = st.selectbox("Sample set", list(sets), key="data.browse")
            st.dataframe(
                data_panel.first_rows(project, shown), key="data.browse.rows", hide_index=True, width="stretch"
            )

# -- route ----------------------------------------------------------------------------------------
with tab_route:
    no_leaves = data_panel.has_no_leaves(tree)
    if not datasets:
        st.info("Import a dataset first (the Import tab).", icon=":material/info:")
    else:
        st.caption(
            "Every sample goes to exactly one leaf: the LLM walks the tree one level at a time, the embedding "
            "router picks the nearest leaf path. Samples that fit no value are counted, never dropped."
        )
        if no_leaves:
            st.info(
                "The tree is only its root: there is no criterion to route by yet. Grow a tree from this data "
                "below, or on the Tree page.",
                icon=":material/account_tree:",
            )
        last = data_panel.last_params(project, "route")  # after a reload, the latest run's choices come back
        c1, c2 = st.columns([1, 2])
        rset = c1.selectbox(
            "Sample set", datasets, index=data_panel.index_of(datasets, last.get("sample_set")), key="data.route.set"
        )
        embedded = state.settings().backend == "embedded"
        routers = list(data_panel.ROUTER_LABELS)
        default_router = last.get("router", data_steps.default_router(state.settings().backend))
        router = c2.radio(
            "Router",
            routers,
            index=data_panel.index_of(routers, default_router),
            format_func=data_panel.ROUTER_LABELS.get,
            key="data.route.router",
        )
        c3, c4, c5 = st.columns([2, 1, 1], vertical_alignment="bottom")
        agree_n = c3.number_input(
            "Measure agreement on N samples (0 = off)",
            0,
            1_000_000,
            int(last.get("agreement_n", 5 if embedded else 20)),
            key="data.route.agreement",
            help="Route a seeded sample of N with the other router too, and report how "
            "often both put a sample in the same place.",
        )
        seed = c4.number_input("Seed", 0, 2**31 - 1, 0, key="data.route.seed")
        if c5.button(
            "Route",
            key="data.route.run",
            type="primary",
            icon=":material/alt_route:",
            disabled=busy or no_leaves,
            width="stretch",
        ):
            _start("route", {"sample_set": rset, "router": router, "agreement_n": int(agree_n), "seed": int(seed)})
        if router == "llm" or agree_n:
            routed = sets.get(rset, 0) if router == "llm" else min(int(agree_n), sets.get(rset, 0))
            st.caption(
                f":material/memory: LLM calls go to {md(state.settings().describe())}; replies are cached, "
                f"so a rerun only routes what is new. "
                + md(route_panel.llm_route_time(project, state.settings(), routed))
            )
        report = route_panel.route_view(project, rset)
        if report is None:
            st.caption("Not routed on the current tree yet.")
        else:
            route_panel.route_summary(project, rset, report)
        with st.expander("Grow a tree from this data", expanded=no_leaves, icon=":material/park:"):
            st.caption(
                "Growth draws each node's pivots from this set's samples that fall in the node instead of "
                "generating them, so the criteria come from the data. New nodes wait for your approval on "
                "the Tree page."
            )
            depth = st.number_input("Depth", 1, 4, 2, key="data.grow.depth")
            if st.button("Grow from this data", key="data.grow.run", icon=":material/park:", disabled=busy):
                _start("grow", {"pivots_from": rset, "max_depth": int(depth), "auto_approve": False})
            st.page_link(PAGE_TREE, label="Open the Tree page", icon=":material/account_tree:")

# -- rebalance ------------------------------------------------------------------------------------
with tab_balance:
    if not datasets:
        st.info("Import and route a dataset first (the Import and Route tabs).", icon=":material/info:")
    else:
        st.caption(
            "A new sample set with the same number of samples in every leaf: crowded leaves keep a seeded "
            "random subset, short approved leaves get the shortfall synthesized in the leaf. The source "
            "set is never changed; every row records whether it is original or synthesized."
        )
        last = data_panel.last_params(project, "balance")  # after a reload, the latest run's choices come back
        c1, c2, c3, c4 = st.columns([2, 1, 2, 1])
        src = c1.selectbox(
            "Source set", datasets, index=data_panel.index_of(datasets, last.get("sample_set")), key="data.balance.set"
        )
        per_leaf = int(
            c2.number_input("Target per leaf", 1, 1_000_000, int(last.get("per_leaf", 10)), key="data.balance.per_leaf")
        )
        target = c3.text_input("New set", str(last.get("target_set", "balanced")), key="data.balance.target").strip()
        bseed = int(c4.number_input("Seed", 0, 2**31 - 1, 0, key="data.balance.seed"))
        responses = st.checkbox("Also write responses for the synthesized samples", key="data.balance.responses")
        plan = balance_panel.balance_plan(project, src, per_leaf=per_leaf, seed=bseed, target=target)
        problem = None
        if not target:
            problem = "Name the new set."
        elif target == src:
            problem = "The rebalanced set must be a new set, not the source."
        elif (naming := dataset_set_problem(target)) is not None:
            problem = data_panel.as_sentence(naming)
        elif not any(leaf["before"] for leaf in plan["leaves"]):
            problem = "No sample of this set is in a leaf yet: route it first (the Route tab)."
        elif sets.get(target):
            missing = balance_panel.still_missing(project, target, per_leaf)
            st.warning(
                f"The set {md(target)} already holds {sets[target]:,} samples: rebalancing into it again "
                f"adds only what is missing ({missing:,} samples to reach {per_leaf} in every approved leaf; "
                "the plan below is for a new set). Delete it on the Import tab to rebuild it.",
                icon=":material/info:",
            )
        st.markdown("**The plan**")
        balance_panel.plan_view(
            plan, balance_panel.shortfall_cost(project, plan, state.settings(), per_leaf=per_leaf, responses=responses)
        )
        if st.button(
            "Rebalance",
            key="data.balance.run",
            type="primary",
            icon=":material/balance:",
            disabled=busy or problem is not None,
        ):
            _start(
                "balance",
                {"sample_set": src, "per_leaf": per_leaf, "target_set": target, "seed": bseed, "responses": responses},
            )
        if problem:
            st.caption(f":orange[:material/warning: {md(problem)}]")

        if target and target != src and sets.get(target):
            st.subheader(f"{md(target)}: before and after")
            info = balance_panel.provenance(project, target)
            kinds = info["provenance"]
            m1, m2, m3 = st.columns(3)
            m1.metric("Samples", sets[target], border=True)
            m2.metric("Original", kinds.get("original", 0), border=True, help="Copied from the source set.")
            m3.metric("Synthesized", kinds.get("synthesized", 0), border=True, help="Written in short leaves.")
            if info["sources"] and src not in info["sources"]:
                st.caption(md(f"{target} was built from {', '.join(info['sources'])}; 'before' shows {src}."))
            rows = balance_panel.before_after(project, src, target)
            if short := [row for row in rows if row["after"] < per_leaf]:
                st.warning(
                    f"{len(short)} of {len(rows)} leaves are below the target of {per_leaf}: the model "
                    "repeated itself or gave unusable replies there (or the leaf is not approved). Rebalance "
                    "again with another seed, or with a capable model, to fill them.",
                    icon=":material/warning:",
                )
            st.plotly_chart(balance_panel.before_after_figure(rows), key="data.balance.figure")
            st.caption(md(f"{plan['unrouted']:,} samples of {src} are in no leaf and were left out."))
            st.dataframe(rows, key="data.balance.counts", hide_index=True, width="stretch")
            if st.toggle(
                "Score before/after at equal n",
                key="data.balance.score",
                help="Vendi, mean cosine and distinct-n of both sets on equal-size seeded subsamples, "
                "with the embedded embedder (G-Vendi where gradient features are stored).",
            ):
                try:
                    with st.spinner("Scoring both sets\u2026"):
                        scores = balance_panel.balance_scores(project, src, target, seed=bseed)
                except TreeSynthError as exc:
                    st.error(md(str(exc)), icon=":material/error:")
                else:
                    balance_panel.scores_view(scores)
            st.page_link(
                PAGE_TREE,
                label="See before and after on the tree (pick the set under 'Counts shown on the tree')",
                icon=":material/account_tree:",
            )
            st.page_link(PAGE_EXPORT, label="Go to the Export page", icon=":material/download:")
            st.caption(
                md(
                    f"From the command line: treesynth export {project.path} --set {target} --format jsonl "
                    f"--out {target}.jsonl"
                )
            )

# -- decontaminate --------------------------------------------------------------------------------
with tab_decontam:
    if not sets:
        st.info("Import a dataset or synthesize samples first.", icon=":material/info:")
    else:
        st.caption(
            "Find the samples that share a run of words with an item of an evaluation set, after normalization "
            "(lowercase, no punctuation): n words, 8 for eval items under 2n words, short items whole. They are "
            "recorded and left out of exports (the dataset card says so), or dropped from the set."
        )
        last = data_panel.last_params(project, "decontaminate")
        names = list(sets)
        c1, c2 = st.columns([1, 2])
        dset = c1.selectbox(
            "Sample set to check", names, index=data_panel.index_of(names, last.get("sample_set")), key="data.decon.set"
        )
        choices = data_panel.eval_choices(sets, dset)
        against = c2.multiselect(
            "Eval sets",
            choices,
            default=[c for c in last.get("against", [data_panel.EXAMPLE_SPEC]) if c in choices],
            format_func=data_panel.eval_label,
            key="data.decon.against",
        )
        eval_path = data_panel.local_path(
            st,
            "\u2026and an eval file on this machine (optional)",
            key="data.decon.path",
            placeholder="/data/eval.jsonl",
        ).strip()
        c3, c4, c5 = st.columns([1, 2, 1], vertical_alignment="bottom")
        n_words = c3.number_input(
            "n (words)", MIN_WORDS, 100, int(last.get("n", DecontamOptions.n)), key="data.decon.n"
        )
        drop = c4.checkbox(
            "Drop them from the set", key="data.decon.drop", help="Delete the contaminated samples (counted and shown)."
        )
        specs = [*against, *([eval_path] if eval_path else [])]
        if c5.button(
            "Check",
            key="data.decon.run",
            type="primary",
            icon=":material/rule:",
            disabled=busy or not specs,
            width="stretch",
        ):
            _start("decontaminate", {"sample_set": dset, "against": specs, "n": int(n_words), "drop": drop})
        data_panel.contamination_view(project, dset)

# -- scaling (SynthLLM) ---------------------------------------------------------------------------
with tab_scale:
    st.caption(
        "SynthLLM (Qin et al., arXiv 2503.19551) fits the rectified scaling law L(D) = B / (D_l + D^beta) + E "
        "to how a model's error falls with the amount D of synthetic data, against the plain power law "
        "B / D^beta + E. Hold out the largest sizes to see which law predicts better; the plateau is the "
        "size beyond which 10x more data gains less than the threshold."
    )
    sources = {"table": "Type or paste points", "example": "The paper's example (Table 1, 8B)", "csv": "Upload a CSV"}
    source = st.radio("Points", list(sources), format_func=sources.get, horizontal=True, key="data.scale.source")
    start: list[tuple[float, float]] = []
    default_kind, size_label, model, ident = "loss", "size", "", source
    if source == "example":
        start, default_kind, size_label = list(balance_panel.EXAMPLE_POINTS), "accuracy_percent", "tokens (billions)"
        st.caption(md(balance_panel.EXAMPLE_NOTE))
    elif source == "csv":
        up = st.file_uploader(
            "A CSV of size,metric rows (optional split and model columns)",
            type=["csv", "tsv", "txt"],
            key="data.scale.csv",
        )
        if up is not None:
            try:
                point_set = parse_points(up.getvalue().decode("utf-8-sig"), source=up.name)
            except (PointsError, UnicodeDecodeError) as exc:
                st.error(md(str(exc)), icon=":material/error:")
            else:
                groups = point_set.by_model()
                model = st.selectbox("Model", list(groups), key="data.scale.model") if len(groups) > 1 else ""
                model = model or next(iter(groups))
                start = [(p.size, p.metric) for p in groups[model]]
                default_kind = infer_metric_kind(point_set.metric_column, [p.metric for p in point_set.points])
                size_label, ident = point_set.size_column, f"csv.{up.file_id}.{model}"
    token = hashlib.blake2b(ident.encode(), digest_size=4).hexdigest()
    frame = st.data_editor(
        scaling_panel.points_frame(start),
        num_rows="dynamic",
        hide_index=True,
        key=f"data.scale.points.{token}",
        column_config={
            "size": st.column_config.NumberColumn("size", format="%g"),
            "metric": st.column_config.NumberColumn("metric", format="%g"),
        },
    )
    k1, k2, k3 = st.columns(3)
    kinds = list(METRIC_LABEL)
    kind = k1.selectbox(
        "Metric", kinds, index=kinds.index(default_kind), format_func=METRIC_LABEL.get, key=f"data.scale.kind.{token}"
    )
    n_test = k2.number_input("Held-out points (the largest sizes)", 0, 20, 1, key="data.scale.test")
    threshold = k3.number_input(
        "Plateau threshold (gain per 10x)",
        min_value=1e-9,
        value=scaling_panel.default_threshold(kind),
        format="%g",
        key=f"data.scale.threshold.{kind}",
    )
    if st.button("Fit", key="data.scale.fit", type="primary", icon=":material/show_chart:"):
        try:
            points = scaling_panel.table_points(frame)
            with st.spinner("Fitting both laws\u2026"):
                fitted = scaling_panel.fit(tuple(points), kind, int(n_test), float(threshold), model)
        except TreeSynthError as exc:
            st.error(md(str(exc)), icon=":material/error:")
        else:
            scaling_panel.fit_view(fitted, size_label=size_label)
