"""Ways forward in the app: the banner after a growth that added nothing (its reason, its attempt
count, the three actions), one message for a failed growth, and the Project page's local models (a
fake server on 127.0.0.1, GGUF files in a fixture cache), whose Use buttons set the backend settings."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio.growth_result import SPLIT_CRITERION, SPLIT_VALUES
from studio.widgets import PAGE_PROJECT as PROJECT
from tests.apptest import create_project, new_app, run, texts, tree_of, wait_for_job, widget_state_warnings
from tests.fakes import ScriptedLLM
from tests.helpers_http import FakeOpenAIServer
from treesynth_core.errors import AuthError
from treesynth_core.jobs import background as jobs
from treesynth_core.llm.discovery import LOCAL_KEY_ENV, PORTS_ENV
from treesynth_core.store import Project

GGUF_BYTES = b"GGUF" + b"\x00" * 32


def weak_model(settings: object) -> ScriptedLLM:
    """A model whose criterion replies are never usable (as the embedded 135M model's often are)."""
    llm = ScriptedLLM()
    llm.enqueue("criterion", ["I think the criterion is maybe topics?"] * 200)
    return llm


def grow_once(at: AppTest, folder: Path) -> AppTest:
    at.button(key="grow.start").click()
    run(at)
    assert wait_for_job(folder).status in ("done", "failed")  # failed: every expansion failed
    return run(at)


def plain(text: str) -> str:
    """Shown text without its markdown escapes."""
    return text.replace("\\", "")


def warnings(at: AppTest) -> str:
    return plain("\n".join(w.value for w in at.warning))


def test_empty_growth_shows_why_and_three_ways_forward(projects: Path) -> None:
    folder = projects / "demo"
    jobs.set_llm_factory(weak_model)
    at = grow_once(create_project(new_app()), folder)
    warning = warnings(at)
    assert "Growth added nothing: the model gave no usable criterion after 5 attempts" in warning
    assert "(attempt" not in warning
    labels = [link.label for link in at.get("page_link")]
    assert "Open an example tree" in labels and "Use a local model" in labels
    assert at.button(key="growth.split") is not None  # the manual split editor, in the banner

    at = grow_once(at, folder)  # Grow again: visibly a new attempt
    assert "Growth added nothing (attempt 2): the model gave no usable criterion" in warnings(at)

    at.text_input(key=SPLIT_CRITERION).input("Topic")
    at.text_area(key=SPLIT_VALUES).input("fractions\npercentages\nrates")
    at.button(key="growth.split").click()
    run(at)
    tree = tree_of(folder)
    root = tree.nodes[tree.root_id]
    assert root.split_criterion == "Topic" and [k.value for k in tree.children(root.id)] == [
        "fractions",
        "percentages",
        "rates",
    ]
    assert "Growth added nothing" not in texts(at)  # the tree changed since: the banner is gone


def test_growth_that_adds_nodes_says_how_many(projects: Path) -> None:
    at = grow_once(create_project(new_app()), projects / "demo")
    added = len(tree_of(projects / "demo").nodes) - 1
    assert f"Growth added {added} nodes." in [plain(s.value) for s in at.success]
    assert not at.warning


def test_failed_growth_shows_one_message(projects: Path) -> None:
    def no_key(settings: object) -> ScriptedLLM:
        raise AuthError("no API key for https://api.example.com/v1: set the environment variable OPENAI_API_KEY")

    jobs.set_llm_factory(no_key)
    at = create_project(new_app())
    at.button(key="grow.start").click()
    run(at)
    assert wait_for_job(projects / "demo").status == "failed"
    run(at)
    assert len(at.error) == 1 and "Growth failed: no API key for https://api.example.com/v1" in plain(at.error[0].value)
    assert not at.warning and not at.success


def test_embedded_backend_says_what_to_expect_before_growing(projects: Path) -> None:
    at = create_project(new_app())
    assert "rarely proposes a usable criterion" in texts(at)
    with Project.open(projects / "demo") as project:  # a GGUF of your own is not the 135M model
        project.save_settings(project.settings().model_copy(update={"gguf_path": "/models/qwen-7b.gguf"}))
    assert "rarely proposes a usable criterion" not in texts(run(at))


@pytest.fixture
def local(projects: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fake server on 127.0.0.1 as the only port probed, and a GGUF file in a fixture LM Studio folder."""
    home = tmp_path / "home"
    gguf = home / ".lmstudio" / "models" / "someone" / "repo" / "tiny.Q4.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(GGUF_BYTES)
    monkeypatch.setenv("HOME", str(home))
    for name in ("OLLAMA_MODELS", "HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    with FakeOpenAIServer(model="qwen2.5:7b") as server:
        monkeypatch.setenv(PORTS_ENV, str(server.port))
        yield server, gguf


def test_models_panel_lists_and_uses_a_local_server_and_gguf(projects: Path, local) -> None:
    server, gguf = local
    at = create_project(new_app())
    at.switch_page(PROJECT)
    run(at)
    shown = plain(texts(at))
    assert "qwen2.5:7b" in shown and "tiny.Q4.gguf" in shown and f"${LOCAL_KEY_ENV}" in shown
    at.button(key=f"models.server.{server.port}.qwen2.5:7b").click()
    run(at)
    with Project.open(projects / "demo") as project:
        saved = project.settings()
    assert (saved.backend, saved.base_url, saved.model, saved.api_key_env) == (
        "openai",
        server.base_url,
        "qwen2.5:7b",
        LOCAL_KEY_ENV,
    )
    assert at.radio(key="settings.backend").value == "openai"
    assert at.text_input(key="settings.base_url").value == server.base_url  # the form shows what is used
    assert "is not set: a server on this machine gets no key" in plain(texts(at))

    at.button(key="models.gguf.0").click()
    run(at)
    with Project.open(projects / "demo") as project:
        saved = project.settings()
    assert (saved.backend, saved.gguf_path) == ("embedded", str(gguf))


def test_without_a_project_use_fills_the_new_project_form(projects: Path, local) -> None:
    server, _ = local
    at = new_app()
    assert at.button(key="models.gguf.0").disabled  # a GGUF file needs a project to run in
    with widget_state_warnings() as warned:
        at.button(key=f"models.server.{server.port}.qwen2.5:7b").click()
        run(at)
    assert warned == []  # the form's inputs take the server's settings as defaults, not also by key
    assert at.radio(key="new.backend").value == "openai"
    assert at.text_input(key="new.base_url").value == server.base_url
    assert at.text_input(key="new.model").value == "qwen2.5:7b"
    assert at.text_input(key="new.key_env").value == LOCAL_KEY_ENV


def test_the_sidebar_says_a_local_server_needs_no_key(projects: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: with $OPENAI_API_KEY unset, a server on 127.0.0.1 gets no key of it (a placeholder goes
    instead), so the sidebar does not say the key comes from it; once it is set, it says so."""
    from studio.widgets import md
    from treesynth_core.llm.settings import BackendSettings

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = BackendSettings(backend="openai", base_url="http://127.0.0.1:8080/v1", model="local-model")
    Project.create(projects / "local", task="Grade-school math word problems", settings=settings).close()
    at = new_app()
    at.selectbox(key="open.choice").set_value(projects / "local")
    at.button(key="open.button").click()
    run(at)
    sidebar = [str(c.value) for c in at.sidebar.caption]
    local = "Sending requests to http://127.0.0.1:8080/v1; no key needed for a local server ($OPENAI_API_KEY is unset)"
    assert any(md(local) in c for c in sidebar), sidebar
    assert not any("with the key in" in c for c in sidebar), sidebar
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-123")
    run(at)
    sidebar = [str(c.value) for c in at.sidebar.caption]
    assert any(md("with the key in $OPENAI_API_KEY") in c for c in sidebar), sidebar
    assert not any("sk-local-123" in c for c in sidebar)


def test_the_local_models_box_is_open_only_when_it_found_something(
    projects: Path, local, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newcomer with no local model sees one closed line above the examples, not an empty box."""
    found = new_app()
    assert found.expander[0].label == "Local models on this machine" and found.expander[0].proto.expanded
    _, gguf = local
    with socket.socket() as unused:  # a port of 127.0.0.1 nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv(PORTS_ENV, str(port))
    gguf.unlink()
    nothing = new_app()
    assert "No server answered" in texts(nothing) and not nothing.expander[0].proto.expanded
