"""End to end in a real browser: `streamlit run app.py` headless, Debian's chromium driven by
Playwright, a tree grown through a real-HTTP OpenAI-compatible endpoint on 127.0.0.1
(:class:`helpers_http.FakeOpenAIServer`) answering with hand-written capable-model replies
(``tests/fixtures/capable/animals_habitat_6.json``), so the growth is the same on every machine.
(The embedded model's own growth is tested, for what holds on any CPU, in ``test_e2e_embedded.py``.)

Creates a project on that endpoint in the app's form, grows it, checks the children are the values
the replies name, clicks a node on the graph's canvas, prunes it from the editor panel and checks
the project changed; renames a value to an HTML payload and checks it shows as text and runs
nothing; checks that the browser fetched nothing from outside 127.0.0.1. Screenshots go to
``test-artifacts/``.

Without /usr/bin/chromium or the playwright package the test skips with the reason, except under
CI (``CI`` set), where it fails: CI must run it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from helpers_http import FakeOpenAIServer, ReplayByPurpose

from tests.helpers_browser import ARTIFACTS, ROOT, browser_fixture, server_fixture, shot, wait_until  # noqa: F401 (fixtures)
from treesynth_core.store import Project

pytestmark = pytest.mark.slow

XSS = "<img src=x onerror=alert(1)>"
TASK = "Short questions about animals"
#: The capable-model scenario the endpoint replays: a root split into six habitats.
SCENARIO = json.loads((ROOT / "tests" / "fixtures" / "capable" / "animals_habitat_6.json").read_text(encoding="utf-8"))
CRITERION, VALUES = "Habitat", ["Ocean", "Desert", "Rainforest", "Arctic tundra", "Grassland", "Freshwater"]
MODEL = "capable-model"


def latest_job_status(folder: Path) -> str | None:
    if not (folder / "treesynth.db").exists():
        return None
    with Project.open(folder) as project:
        rows = project.jobs(limit=1)
    return rows[0].status if rows else None


def graph_nodes(page) -> list[dict]:
    return page.evaluate(
        "() => window.treesynthGraph ? window.treesynthGraph.nodes.get().map("
        "n => ({id: n.id, level: n.level, status: n.status, label: n.label})) : []"
    )


def click_node(page, node_id: str, *, double: bool = False) -> None:
    """Click (or double-click) a node once the view holds still with the node under the pointer: the
    graph refits itself while the page settles (a late resize), which would move it under a click."""

    def steady_center() -> dict | None:
        page.evaluate("(id) => window.treesynthGraph.network.focus(id, {scale: 1.0})", node_id)
        time.sleep(0.3)
        first = page.evaluate("(id) => window.treesynthGraph.nodeCenter(id)", node_id)
        time.sleep(0.3)
        center = page.evaluate("(id) => window.treesynthGraph.nodeCenter(id)", node_id)
        still = (
            center == first
            and page.evaluate("([x, y]) => window.treesynthGraph.nodeAt(x, y)", [center["x"], center["y"]]) == node_id
        )
        return center if still else None

    center = wait_until(steady_center, 15, f"node {node_id} to hold still on screen", poll=0.2)
    if double:
        page.mouse.dblclick(center["x"], center["y"])
    else:
        page.mouse.click(center["x"], center["y"])


@pytest.fixture
def endpoint():
    """An OpenAI-compatible endpoint on 127.0.0.1 replaying the capable-model scenario by purpose."""
    replay = ReplayByPurpose.from_scenario(SCENARIO)
    with FakeOpenAIServer(respond=replay, model=MODEL) as fake:
        yield fake, replay


def test_create_grow_click_prune_and_safe_text(browser, server, endpoint):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        _create_grow_click_prune(page, *server, *endpoint)
    except BaseException:
        shot(page, "failure")  # what the page showed when it went wrong
        raise
    finally:
        page.close()


def _create_grow_click_prune(page, url: str, projects: Path, fake: FakeOpenAIServer, replay: ReplayByPurpose) -> None:
    folder = projects / "animals"
    dialogs: list[str] = []
    outside: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on(
        "request",
        lambda r: None if r.url.startswith((url, "blob:", "data:")) else outside.append(r.url),
    )
    page.set_default_timeout(60_000)

    # -- create a project on the OpenAI-compatible endpoint ---------------------------------------
    page.goto(url)
    page.get_by_role("heading", name="Open an example").wait_for()
    shot(page, "01-project")
    page.get_by_label("Project name").fill("animals")
    page.get_by_label("Task description").fill(TASK)
    page.get_by_text("OpenAI-compatible endpoint", exact=True).click()
    for label, value in (("Base URL", fake.base_url), ("Model", MODEL)):
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Tab")
        time.sleep(0.6)
    page.get_by_role("button", name="Create project").click()
    page.get_by_role("heading", name="Tree", exact=True).wait_for()
    assert (folder / "treesynth.db").is_file()
    with Project.open(folder) as project:
        settings = project.settings()
    assert (settings.backend, settings.base_url, settings.model) == ("openai", fake.base_url, MODEL)

    # -- grow one level through the endpoint -----------------------------------------------------
    for label, value in (("Depth", "1"), ("Pivots", "3")):
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Tab")
        time.sleep(0.6)
    page.get_by_text("Auto-approve", exact=True).click()
    time.sleep(0.8)
    page.get_by_role("button", name="Grow the tree").click()
    wait_until(lambda: latest_job_status(folder) not in (None, "running"), 120, "growth to finish", poll=1)
    assert latest_job_status(folder) == "done"
    assert replay.left() == {} and sorted(set(replay.asked)) == ["coverage", "criterion", "pivots"]
    assert all(r.body["model"] == MODEL for r in fake.chat_requests)
    nodes = wait_until(lambda: [n for n in graph_nodes(page) if n["level"] == 1], 30, "grown nodes in the graph")
    time.sleep(1)
    shot(page, "02-tree-grown")
    with Project.open(folder) as project:
        tree = project.tree()
    assert tree.nodes[tree.root_id].split_criterion == CRITERION
    children = tree.children(tree.root_id)
    assert sorted(c.value for c in children) == sorted(VALUES) and not any(c.pool for c in children)
    assert len(nodes) == len(children) == len(VALUES)

    # -- click a node on the canvas, prune it from the panel -------------------------------------
    target = nodes[0]["id"]
    value = tree.nodes[target].value
    click_node(page, target)
    panel_prune = page.get_by_role("button", name="Prune", exact=True)
    panel_prune.wait_for()
    page.get_by_text(f"path: {value}", exact=False).first.wait_for()
    shot(page, "03-node-selected")
    panel_prune.click()
    page.get_by_role("button", name="Restore", exact=True).wait_for()
    wait_until(
        lambda: any(n["id"] == target and n["status"] == "pruned" for n in graph_nodes(page)),
        20,
        "the graph to show the prune",
    )
    with Project.open(folder) as project:
        assert project.tree().nodes[target].pruned
    shot(page, "04-node-pruned")

    # -- an HTML payload as a value shows as text and runs nothing -------------------------------
    other = nodes[1]["id"]
    click_node(page, other)
    value_box = page.get_by_label("Value", exact=True)
    value_box.first.wait_for()  # a stale box may stand beside it for a moment (strict mode would fail)
    # while Streamlit redraws, the previous node's (stale) input can briefly stand beside the new one:
    # read every "Value" box in one go (counting, then reading, races with the redraw)
    wait_until(
        lambda: value_box.evaluate_all("els => els.map(e => e.value)") == [tree.nodes[other].value],
        20,
        "the panel to show the node",
    )
    value_box.fill(XSS)
    value_box.press("Tab")
    time.sleep(0.4)
    page.get_by_role("button", name="Rename value").click()
    wait_until(
        lambda: any(n["id"] == other and n["label"] == XSS for n in graph_nodes(page)),
        20,
        "the renamed node in the graph",
    )
    page.evaluate("(id) => window.treesynthGraph.network.focus(id, {scale: 1.0})", other)
    time.sleep(0.4)
    center = page.evaluate("(id) => window.treesynthGraph.nodeCenter(id)", other)
    page.mouse.move(5, 5)  # off the graph, so the next hover opens a fresh tooltip
    time.sleep(0.3)
    page.mouse.move(center["x"] + 5, center["y"] + 2, steps=5)
    tooltip = page.locator("div.vis-tooltip")
    tooltip.wait_for(state="visible")
    shot(page, "05-xss-as-text")
    assert XSS in tooltip.inner_text()
    assert tooltip.locator("img").count() == 0
    assert page.locator("img[src='x']").count() == 0
    assert page.get_by_text(XSS, exact=True).count() >= 1  # the panel shows it literally too
    time.sleep(1)
    assert dialogs == []
    with Project.open(folder) as project:
        assert project.tree().nodes[other].value == XSS

    # -- a reload comes back to the same project; nothing was fetched from the internet ----------
    page.reload()
    page.get_by_role("heading", name="Tree", exact=True).wait_for()
    wait_until(lambda: len(graph_nodes(page)) >= 3, 30, "the graph after a reload")
    assert outside == [], f"requests left the machine: {outside[:5]}"


def test_deep_link_after_a_restart_draws_the_frame(browser, server):
    """A tab reloading /tree right after the server starts gets the whole app, not a bare page."""
    url, projects = server
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/tree")
    page.get_by_text("No project is open yet").wait_for(timeout=30_000)
    assert page.get_by_text("TreeSynth Studio").count() >= 1  # the sidebar of app.py
    assert page.get_by_role("link", name="Synthesize").count() >= 1
    page.close()


def test_example_tree_screenshot(browser, server):
    """The README picture: an example tree with one branch open and its tooltip."""
    url, projects = server
    page = browser.new_page(viewport={"width": 1500, "height": 1120}, device_scale_factor=1)
    page.goto(url)
    page.get_by_role("button", name="Open example").nth(1).click()
    page.get_by_role("heading", name="Tree", exact=True).wait_for(timeout=30_000)
    nodes = wait_until(lambda: [n for n in graph_nodes(page) if n["level"] == 1], 30, "the example's graph")
    click_node(page, nodes[0]["id"], double=True)
    wait_until(lambda: any(n["level"] == 2 for n in graph_nodes(page)), 30, "an unfolded branch")
    page.locator(".ts-fit").click()
    time.sleep(0.8)
    level2 = [n for n in graph_nodes(page) if n["level"] == 2]
    click_node(page, level2[5]["id"])
    page.get_by_role("button", name="Prune", exact=True).wait_for()
    page.locator(".ts-fit").click()
    time.sleep(0.8)
    level1 = [n for n in graph_nodes(page) if n["level"] == 1]
    center = page.evaluate("(id) => window.treesynthGraph.nodeCenter(id)", level1[2]["id"])
    page.mouse.move(5, 5)
    page.mouse.move(center["x"] + 4, center["y"] + 2, steps=5)
    page.locator("div.vis-tooltip").wait_for(state="visible")
    page.get_by_test_id("stToast").first.wait_for(state="detached", timeout=15_000)
    shot(page, "06-example-tree")
    for name, label in (("07-synthesize", "Synthesize"), ("08-export", "Export")):
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=label).click()
        page.get_by_role("heading", name=label, exact=True).wait_for()
        time.sleep(1)
        shot(page, name)
    # A link to a page of the open project (a reload, a bookmark) opens that page, not "Page not found".
    name = page.url.split("project=", 1)[1].split("&", 1)[0]
    for path, heading in (("tree", "Tree"), ("data", "Data"), ("coverage", "Coverage")):
        page.goto(f"{url}/{path}?project={name}")
        page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=30_000)
        time.sleep(1)
        assert page.get_by_text("Page not found").count() == 0, path
        assert f"/{path}" in page.url
    page.close()
    target = os.environ.get("TREESYNTH_README_SHOT")  # where to keep a copy for the README, if asked
    if target:
        shutil.copy(ARTIFACTS / "06-example-tree.png", target)


def tree_page(browser, server, name: str, tree, *, shown: int):
    """A new page on the Tree page of a project ``name`` made from ``tree``, once its graph draws
    ``shown`` nodes."""
    url, projects = server
    with Project.create(projects / name, task=tree.task) as project:
        project.replace_tree(tree, kind="import")
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    page.goto(f"{url}/tree?project={name}")
    page.get_by_role("heading", name="Tree", exact=True).wait_for(timeout=30_000)
    wait_until(lambda: len(graph_nodes(page)) >= shown, 30, f"{shown} nodes drawn")
    return page


def test_a_tooltip_hides_when_the_pointer_leaves_the_graph_from_an_edge_node(browser, server):
    """Issue 13: vis fires no blurNode when the pointer leaves the canvas straight from a node at its
    edge, so the node's tooltip stayed over the page; leaving the graph hides it."""
    from tests.trees import wide_tree

    page = tree_page(browser, server, "small", wide_tree(fanout=4, depth=2), shown=5)
    try:
        box = page.locator(".ts-canvas").bounding_box()
        assert box is not None
        right = box["x"] + box["width"]

        def edge_node() -> tuple[str, dict] | None:
            """The node nearest the graph's right edge, once the view holds still."""
            centers = {
                n["id"]: page.evaluate("(id) => window.treesynthGraph.nodeCenter(id)", n["id"])
                for n in graph_nodes(page)
            }
            time.sleep(0.4)
            node_id = max(centers, key=lambda i: centers[i]["x"])
            again = page.evaluate("(id) => window.treesynthGraph.nodeCenter(id)", node_id)
            at = page.evaluate("([x, y]) => window.treesynthGraph.nodeAt(x, y)", [again["x"], again["y"]])
            return (node_id, again) if again == centers[node_id] and at == node_id else None

        node_id, center = wait_until(edge_node, 15, "the graph to hold still", poll=0.2)
        page.mouse.move(5, 5)
        page.mouse.move(center["x"], center["y"], steps=5)
        tip = page.locator("div.vis-tooltip")
        tip.wait_for(state="visible")
        assert page.evaluate("([x, y]) => window.treesynthGraph.nodeAt(x, y)", [center["x"], center["y"]]) == node_id
        page.mouse.move(right + 40, center["y"])  # one step: straight off the canvas, no move over it
        tip.wait_for(state="hidden", timeout=5_000)
        shot(page, "tooltip-left-the-graph")
    finally:
        page.close()


def test_a_big_tree_overview_focus_full_screen_and_readable_labels(browser, server):
    """A 2,380-node tree at 1400x1000: the graph opens on one level with every label at least
    10 px, fully above the fold; a click on the overview's icicle focuses the graph on that subtree;
    full screen gives the graph the window; a tooltip sits beside its node, not over the neighbours."""
    from tests.trees import wide_tree

    url, projects = server
    big = wide_tree(fanout=13, depth=3)
    with Project.create(projects / "big", task=big.task) as project:
        project.replace_tree(big, kind="import")
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    page.goto(f"{url}/tree?project=big")
    page.get_by_role("heading", name="Tree", exact=True).wait_for(timeout=30_000)
    wait_until(lambda: len(graph_nodes(page)) == 14, 30, "the root and its 13 children")
    time.sleep(1)
    scale = page.evaluate("() => window.treesynthGraph.network.getScale()")
    assert scale >= 0.65, scale  # 16 px labels drawn over 10 px tall
    shot(page, "bigtree-1-default")
    box = page.locator(".ts-canvas").bounding_box()
    assert box is not None and box["y"] + box["height"] <= 1000, box  # the graph ends above the fold

    # A tooltip shows beside its node: it covers neither the node nor the siblings above and below.
    first = page.evaluate("() => window.treesynthGraph.nodeCenter('r.6')")  # mid-column, on screen
    page.mouse.move(5, 5)
    page.mouse.move(first["x"], first["y"], steps=5)
    tip = page.locator("div.vis-tooltip")
    tip.wait_for(state="visible")
    time.sleep(0.3)
    tip_box = tip.bounding_box()
    assert tip_box is not None
    assert not (tip_box["x"] <= first["x"] <= tip_box["x"] + tip_box["width"]), (tip_box, first)
    page.mouse.move(5, 5)

    page.get_by_text("Overview", exact=True).first.click()
    page.locator(".js-plotly-plot").first.wait_for(timeout=20_000)
    time.sleep(1.5)
    shot(page, "bigtree-2-overview")
    page.locator(".js-plotly-plot text", has_text="v1-3").first.click(force=True)
    wait_until(lambda: any(n["id"].startswith("r.3.") for n in graph_nodes(page)), 30, "the focused subtree")
    ids = {n["id"] for n in graph_nodes(page)}
    assert {f"r.3.{i}" for i in range(13)} <= ids and not any(i.startswith("r.4.") for i in ids)
    time.sleep(1)
    assert page.evaluate("() => window.treesynthGraph.network.getScale()") >= 0.65
    shot(page, "bigtree-3-focused")

    page.get_by_text("Full screen", exact=True).first.click()
    page.get_by_role("button", name="Lock", exact=True).wait_for(state="detached", timeout=20_000)
    time.sleep(1.5)
    box = page.locator(".ts-canvas").bounding_box()
    assert box is not None and box["height"] >= 1000 - 200 and box["width"] >= 900, box  # was 420+ x 600
    shot(page, "bigtree-4-full-screen")
    page.close()


def test_a_node_found_by_search_shows_beside_its_parent(browser, server):
    """Walking the app: picking a node in "Find a node" centred that node alone, so the first child
    of a wide fan sat mid-canvas with its parent (and half the canvas) out of view; the view now
    fits the node with its parent and shown children."""
    from tests.trees import wide_tree

    page = tree_page(browser, server, "fan", wide_tree(fanout=16, depth=1), shown=17)
    try:
        search = page.get_by_test_id("stSelectbox").first.locator("input")
        search.click()
        page.keyboard.type("v1-0")
        page.get_by_role("option", name="v1-0", exact=True).click()
        page.get_by_text("path: v1-0").wait_for(timeout=15_000)
        box = page.locator(".ts-canvas").bounding_box()
        assert box is not None

        def centers() -> list[dict]:
            return [page.evaluate("(id) => window.treesynthGraph.nodeCenter(id)", i) for i in ("r.0", "r")]

        def settled() -> list[dict] | None:
            """The two centres once the view holds still after the pick's animation."""
            first = centers()
            time.sleep(0.5)
            return first if centers() == first else None

        time.sleep(1.0)  # the pick's view change starts after the page's rerun
        shown = wait_until(settled, 15, "the view to hold still", poll=0.2)
        shot(page, "search-focus-with-parent")
        for c in shown:
            assert box["x"] <= c["x"] <= box["x"] + box["width"], (c, box)
            assert box["y"] <= c["y"] <= box["y"] + box["height"], (c, box)
    finally:
        page.close()
