"""Two tabs and a reload in a real browser (`streamlit run app.py`, Debian's chromium under Playwright):
what AppTest cannot see. A reload keeps the tab's token in the URL (its jobs and edits stay its own);
a tab opened from a copied address while the first is open gets a token of its own; and an edit made
elsewhere shows on an idle Tree page without a click (its poll, ``studio.tabs.watch``).

Without /usr/bin/chromium or the playwright package the test skips with the reason, except under CI.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from tests.helpers_browser import browser_fixture, server_fixture, shot, wait_until  # noqa: F401 (fixtures)
from treesynth_core.store import Project
from treesynth_core.tree.edits import run_edit

pytestmark = pytest.mark.slow


def query(page, name: str) -> str | None:
    return (parse_qs(urlparse(page.url).query).get(name) or [None])[0]


def test_a_reload_is_the_same_tab_a_copy_is_another_and_edits_elsewhere_show_live(browser, server):
    url, projects = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.get_by_role("button", name="Open example").first.click()
    page.get_by_role("heading", name="Tree", exact=True).wait_for(timeout=60_000)
    token = wait_until(lambda: query(page, "tab"), 20, "the tab's token in the URL")
    name = wait_until(lambda: query(page, "project"), 20, "the project in the URL")

    page.reload()
    page.get_by_role("heading", name="Tree", exact=True).wait_for(timeout=60_000)
    wait_until(lambda: query(page, "project") == name, 20, "the project after the reload")
    assert query(page, "tab") == token  # the same tab after a reload

    copy = browser.new_page(viewport={"width": 1400, "height": 1000})
    copy.goto(page.url)  # the address copied into a new tab while the first is open
    copy.get_by_role("heading", name="Tree", exact=True).wait_for(timeout=60_000)
    wait_until(lambda: query(copy, "tab") not in (None, token), 20, "a token of its own for the copy")
    copy.close()

    with Project.open(projects / name, owner="cli:someone") as project:  # an edit from elsewhere
        tree = project.tree()
        node = tree.children(tree.root_id)[0]
        run_edit(project, "rename", seen=tree, node_id=node.id, new_value="Renamed elsewhere")
    notice = page.get_by_text("Another tab or person made 1 edit since you last looked")
    notice.wait_for(timeout=30_000)  # no click: the idle page's poll found it
    shot(page, "tabs-live-notice")
    page.close()
