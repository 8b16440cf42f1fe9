"""Issue 12 item 9: a project's saved settings never send a secret to a host the person did not choose,
and text from LLMs and users never turns into images, links or HTML where it is shown."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.helpers_http import FakeOpenAIServer, Reply, openai_flags
from treesynth_core.cli import common
from treesynth_core.cli.app import app
from treesynth_core.llm.settings import (
    ALLOW_KEY_ENV_VAR,
    TRUST_ENDPOINT_VAR,
    BackendSettings,
    Endpoint,
    is_loopback,
    looks_like_key_env,
    merge_settings,
)

runner = CliRunner()
FOREIGN = "https://llm.example.net/v1"


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("TREESYNTH_BASE_URL", "TREESYNTH_API_KEY_ENV", "TREESYNTH_LLM", ALLOW_KEY_ENV_VAR, TRUST_ENDPOINT_VAR):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(common.STATE, "announced", set())


# -- the rules ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["OPENAI_API_KEY", "MY_KEY", "HF_TOKEN", "groq_api_key", "TOGETHER_APIKEY", "X_SECRET"]
)
def test_key_variable_names_that_look_like_keys(name):
    assert looks_like_key_env(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "USER", "PWD", "SSH_AUTH_SOCK", "KEYBOARD", "TOKENIZERS_PARALLELISM"])
def test_other_variable_names_do_not(name):
    assert not looks_like_key_env(name)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://127.3.2.1/v1", True),
        ("http://0.0.0.0:8000/v1", True),
        ("http://10.0.0.5:8000/v1", False),
        ("https://localhost.evil.net/v1", False),
        (FOREIGN, False),
    ],
)
def test_loopback(url, local):
    assert is_loopback(url) is local


def openai(**fields) -> BackendSettings:
    return BackendSettings(backend="openai", model="m", **fields)


def test_a_project_named_key_variable_that_is_not_a_key_needs_confirmation():
    saved = openai(api_key_env="PATH")
    target = Endpoint.of(saved, saved, chosen=())
    assert target.key_env_from_project and not target.url_from_project
    problem = target.problem(environ={})
    assert problem is not None and "$PATH" in problem and "--allow-key-env PATH" in problem
    assert target.problem(allow_key_env=["PATH"], environ={}) is None
    assert target.problem(environ={ALLOW_KEY_ENV_VAR: "HOME, PATH"}) is None
    assert "TREESYNTH_ALLOW_KEY_ENV=PATH" in (target.problem(environ={}, how="app") or "")


def test_a_key_variable_chosen_on_this_machine_is_the_persons_choice():
    saved = openai()
    settings = merge_settings(saved, {"api_key_env": "PATH"})
    assert Endpoint.of(saved, settings, chosen={"api_key_env"}).problem(environ={}) is None
    # the same name read from the project is not
    assert Endpoint.of(settings, settings, chosen=()).problem(environ={}) is not None


def test_a_project_named_key_variable_that_looks_like_a_key_is_fine():
    saved = openai(api_key_env="GROQ_API_KEY", base_url="http://127.0.0.1:8000/v1")
    assert Endpoint.of(saved, saved, chosen=()).problem(environ={}) is None


def test_a_foreign_endpoint_from_the_project_needs_confirmation():
    saved = openai(base_url=FOREIGN)
    target = Endpoint.of(saved, saved, chosen=())
    problem = target.problem(environ={})
    assert problem is not None and FOREIGN in problem and "--trust-endpoint" in problem
    assert target.problem(trust_endpoint=True, environ={}) is None
    assert target.problem(environ={TRUST_ENDPOINT_VAR: "llm.example.net"}) is None
    assert target.problem(environ={TRUST_ENDPOINT_VAR: FOREIGN}) is None
    assert target.problem(environ={TRUST_ENDPOINT_VAR: "other.example.net"}) is not None


@pytest.mark.parametrize(
    ("saved", "chosen"),
    [
        (openai(), ()),  # the default OpenAI host
        (openai(base_url="https://api.openai.com/v1/"), ()),
        (openai(base_url="http://127.0.0.1:8000/v1"), ()),  # a local vLLM
        (openai(base_url="http://localhost:11434/v1", api_key_env="OLLAMA_TOKEN"), ()),
        (openai(base_url=FOREIGN), ("base_url",)),  # TREESYNTH_BASE_URL or --base-url
    ],
)
def test_common_cases_need_no_confirmation(saved, chosen):
    assert Endpoint.of(saved, saved, chosen=chosen).problem(environ={}) is None


def test_the_notice_names_the_endpoint_and_the_variable_never_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-shown-123")
    notice = Endpoint.of(None, openai(), chosen=()).notice()
    assert notice == "Sending requests to https://api.openai.com/v1 with the key in $OPENAI_API_KEY"


def test_the_notice_of_a_local_server_without_a_key_says_none_is_needed() -> None:
    """Issue 13: a local server gets no key of an unset variable (a placeholder goes instead)."""
    local = Endpoint.of(None, openai(base_url="http://127.0.0.1:8080/v1"), chosen=())
    assert local.notice(environ={}) == (
        "Sending requests to http://127.0.0.1:8080/v1; no key needed for a local server ($OPENAI_API_KEY is unset)"
    )
    with_key = local.notice(environ={"OPENAI_API_KEY": "sk-local"})
    assert with_key == "Sending requests to http://127.0.0.1:8080/v1 with the key in $OPENAI_API_KEY"
    remote = Endpoint.of(None, openai(), chosen=()).notice(environ={})
    assert remote.endswith("with the key in $OPENAI_API_KEY")  # a remote server needs it: said as before


# -- the CLI --------------------------------------------------------------------------------------
def test_a_project_naming_path_as_its_key_never_sends_it(tmp_path, monkeypatch):
    """``treesynth settings P --api-key-env PATH`` used to send ``Bearer /usr/bin:...``."""
    monkeypatch.setenv("TREESYNTH_MAX_RETRIES", "0")
    monkeypatch.setenv("MY_API_KEY", "sk-test-mine-123")
    proj = tmp_path / "p"
    with FakeOpenAIServer() as server:
        server.script(Reply.error(500, "should not be reached"))
        assert invoke("new", proj, "--task", "t", *openai_flags(server.base_url, "m")).exit_code == 0
        assert invoke("settings", proj, "--api-key-env", "PATH").exit_code == 0  # a project as someone made it
        result = invoke("grow", proj, "-q", "--max-calls", "1")
        assert result.exit_code == 1
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "$PATH" in lines[0] and "--allow-key-env PATH" in lines[0], result.output
        assert server.chat_requests == []
        # the person names the key on this machine: it goes, and only it
        invoke("grow", proj, "-q", "--max-calls", "1", "--api-key-env", "MY_API_KEY")
        assert [r.headers["authorization"] for r in server.chat_requests] == ["Bearer sk-test-mine-123"]


def test_a_foreign_endpoint_saved_in_the_project_is_refused_until_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("TREESYNTH_MAX_RETRIES", "0")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-mine-123")
    proj = tmp_path / "p"
    assert invoke("new", proj, "--task", "t", *openai_flags("http://llm.invalid:9/v1", "m")).exit_code == 0
    result = invoke("synth", proj, "--per-leaf", "1", "-q")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "http://llm.invalid:9/v1" in lines[0] and "--trust-endpoint" in lines[0], result.output
    shown = invoke("settings", proj).output
    assert "Sending requests to http://llm.invalid:9/v1 with the key in $OPENAI_API_KEY" in shown
    assert "--trust-endpoint" in shown


def test_an_endpoint_from_the_environment_is_announced_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TREESYNTH_MAX_RETRIES", "0")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-mine-123")
    proj = tmp_path / "p"
    assert invoke("new", proj, "--task", "t", *openai_flags(FOREIGN, "m")).exit_code == 0
    with FakeOpenAIServer() as server:
        server.script(Reply.ok(json.dumps({"criterion": "x", "values": ["a", "b"]})))
        monkeypatch.setenv("TREESYNTH_BASE_URL", server.base_url)  # chosen here: no confirmation
        result = invoke("grow", proj, "-q", "--max-calls", "1", "--depth", "1")
        notice = f"Sending requests to {server.base_url.rstrip('/')} with the key in $OPENAI_API_KEY"
        assert result.output.count(notice) == 1, result.output
        assert len(server.chat_requests) >= 1


# -- escaping -------------------------------------------------------------------------------------
HOSTILE = [
    "![x](http://evil.example/p.png)",
    "[click](javascript:alert(1))",
    '<img src="http://evil.example/p.png" onerror="alert(1)">',
    "<script>alert(1)</script>",
    "<http://evil.example/autolink>",
    "&lt;img src=x&gt; *bold* `code` # heading\n- item | cell |",
]


def rendered(markdown: str) -> str:
    """The HTML a CommonMark renderer with raw HTML and tables on (as on the Hugging Face hub) makes."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def assert_inert(html: str) -> None:
    for tag in ("<img", "<a ", "<script", "<em>", "<code>", "<h1>", "<li>"):
        assert tag not in html, (tag, html)


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_text_renders_as_itself(text):
    from treesynth_core.data.export import escape_markdown

    html = rendered(escape_markdown(text))
    assert_inert(html)
    assert "evil.example" in html or "bold" in html or "alert" in html  # the text itself is still shown


def test_the_dataset_card_shows_llm_text_literally(tmp_path):
    from treesynth_core.data.export import export_samples
    from treesynth_core.store.samples import Sample
    from treesynth_core.tree import model as T

    tree = T.new_tree("Math ![x](http://evil.example/task.png) <img src=http://evil.example/t.png>")
    tree = T.attach_split(
        tree,
        tree.root_id,
        criterion="topic [click](javascript:alert(1))",
        values=["![pixel](http://evil.example/p.png)", "<script>alert(1)</script>"],
        provenance=T.Provenance("llm"),
    )
    leaves = tree.children(tree.root_id)
    tree = T.approve(tree, [leaf.id for leaf in leaves])
    samples = [
        Sample(leaf_id=leaf.id, key="0", instruction="q", path=[], model="m](http://evil.example/m.png")
        for leaf in leaves
    ]
    card = export_samples(tree, samples, "jsonl", tmp_path / "d.jsonl").card.read_text(encoding="utf-8")
    body = card.split("---", 2)[-1]
    html = rendered(body)
    for tag in ("<img", "<a ", "<script"):
        assert tag not in html, (tag, html)
    assert "evil.example/task.png" in html and "evil.example/p.png" in html  # shown, as text


def test_a_server_error_is_printed_as_text_not_terminal_markup(tmp_path, monkeypatch):
    """Rich markup in a server's error text (a terminal hyperlink, colours) is printed literally."""
    monkeypatch.setenv("TREESYNTH_MAX_RETRIES", "0")
    proj = tmp_path / "p"
    with FakeOpenAIServer() as server:
        server.script(Reply.error(401, "[link=http://evil.example/]renew your key here[/link] [red]now[/red]"))
        assert invoke("new", proj, "--task", "t", *openai_flags(server.base_url, "m")).exit_code == 0
        result = invoke("grow", proj, "-q", "--max-calls", "1")
    assert result.exit_code == 1
    assert "[link=http://evil.example/]renew your key here[/link] [red]now[/red]" in result.output, result.output


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("e.g. 3-4 items: a, b.", "e.g. 3-4 items: a, b."),
        ("Note: 3.14 - 2 = 1.14", "Note: 3.14 - 2 = 1.14"),
        ("1. first", "1\\. first"),
        ("- item", "\\- item"),
        ("---", "\\---"),
        ("-5 degrees", "-5 degrees"),
        ("see www.evil.example", "see www\\.evil.example"),
        ("write to x@evil.example", "write to x\\@evil.example"),
        ("http://evil.example", "http\\://evil.example"),
        (":red[x] :material/star:", "\\:red\\[x\\] \\:material/star:"),
        ("a_b *c*", "a\\_b \\*c\\*"),
    ],
)
def test_escape_markdown_escapes_only_what_would_be_markup(text, escaped):
    """``.``, ``-`` and ``:`` mid-text stay as they are (the text stays readable where it is not
    rendered); a list marker, an autolink and Streamlit's directives are escaped."""
    from treesynth_core.data.export import escape_markdown as old_home
    from treesynth_core.text import escape_markdown

    assert escape_markdown(text) == escaped
    assert old_home is escape_markdown
