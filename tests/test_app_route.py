"""The Data page's routing result with AppTest: counts at the top, a warning when one leaf swallows
the set, labelled horizontal bars per leaf and examples of what was routed into each leaf."""

from __future__ import annotations

import json

from studio.widgets import PAGE_DATA
from tests.apptest import new_app, open_example, run, texts
from treesynth_core.data import routing as R
from treesynth_core.data.examples import EXAMPLES
from treesynth_core.data.ingest import ColumnMap, import_file
from treesynth_core.store import Project
from treesynth_core.store.samples import Route


def routed_like_the_issue(folder) -> str:
    """HumanEval imported and "routed": 120 samples into one leaf, 30 into another, 14 none fits
    (one sample's text is an HTML tag). Returns the crowded leaf's path."""
    example = EXAMPLES["humaneval"]
    with Project.open(folder) as project:
        import_file(project, example.path(), ColumnMap(**example.mapping), sample_set="imported")
        tree = project.tree()
        ruby = next(leaf for leaf in tree.leaves() if leaf.value == "Ruby")
        pytest_leaf = next(leaf for leaf in tree.leaves() if leaf.value == "pytest")
        digest = R.route_digest(tree, "embedding")
        ids = [s.id for s in project.samples(sample_set="imported")]

        def to(leaf_id: str | None, sample_id: int) -> Route:
            if leaf_id is None:
                return Route(sample_id, "embedding", "none", tree.root_id, None, [], "", digest)
            path = [{"criterion": s.criterion, "value": s.value} for s in tree.path(leaf_id)]
            return Route(sample_id, "embedding", "leaf", leaf_id, leaf_id, path, "", digest)

        routes = [to(ruby.id, i) for i in ids[:120]] + [to(pytest_leaf.id, i) for i in ids[120:150]]
        project.put_routes(routes + [to(None, i) for i in ids[150:]])
        R.assign(project, "embedding", sample_set="imported")
        return R.path_label(tree, ruby.id)


def test_routing_result_shows_counts_a_crowded_leaf_labelled_bars_and_examples(projects):
    at = open_example(new_app(), "python_coding")
    ruby = routed_like_the_issue(projects / "example-python_coding")
    at.switch_page(PAGE_DATA)
    at = run(at)
    seen = {m.label: m.value for m in at.metric}
    assert (seen["In a leaf"], seen["None fits"], seen["Errors"], seen["Routed"]) == ("150", "14", "0", "164")
    assert [m.label for m in at.metric][:3] == ["In a leaf", "None fits", "Errors"]  # where the eye goes first
    warning = " ".join(w.value for w in at.warning)
    assert "120 of 150 samples in leaves (80%) are in one leaf" in warning and "Ruby" in warning

    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    bar = chart["data"][0]
    assert bar["orientation"] == "h" and bar["x"][:2] == [120, 30]
    labels = chart["layout"]["yaxis"]["ticktext"]
    assert labels[0].endswith("translate into Python \u203a Ruby") and labels[1].endswith("pytest")
    assert len(labels) == 55 and all(len(label) <= 48 for label in labels)
    assert bar["customdata"][0] == ruby  # the whole path on hover

    examples = at.selectbox(key="data.route.examples")
    assert examples.options[0] == ruby and "The first 5 of 120 samples there." in texts(at)
    shown = [t.value for t in at.text]
    assert len(shown) == 5
    examples.select_index(1)  # pytest: the next 30 samples
    at = run(at)
    assert "The first 5 of 30 samples there." in texts(at)
    examples = at.selectbox(key="data.route.examples")
    examples.select_index(len(examples.options) - 1)  # in no leaf
    at = run(at)
    assert "The first 5 of 14 samples there." in texts(at)
