"""Concept extraction and level 1-3 questions through llama.cpp's real OpenAI-compatible server
(``llama_cpp.server`` on 127.0.0.1, SmolLM2-135M), on two short topics of Python's reference.

As with the embedded model, what the 135M model writes differs from CPU to CPU: this asserts what
holds on any of them. Every command ends with 0 (done), 1 (a level that found nothing to combine)
or 3 (partly done); every document is extracted or counted as failed; every level adds questions
recorded with their level, documents and the server's model, or names its shortfall; the stored
concepts are what extract reported."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.helpers_concepts import level_refused, write_python_docs
from tests.helpers_http import openai_flags
from tests.helpers_llama import llama_server
from treesynth_core.cli.app import app
from treesynth_core.cli.common import PARTIAL_EXIT
from treesynth_core.concepts.store import load_concepts, load_documents
from treesynth_core.store import Project

#: The 135M model on a busy 2-core machine took 4-10 minutes here (the default limit is 5).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
runner = CliRunner()


def test_concepts_end_to_end_through_llama_cpps_server(tmp_path, monkeypatch):
    for var in ("TREESYNTH_LLM", "TREESYNTH_BASE_URL", "TREESYNTH_MODEL"):
        monkeypatch.delenv(var, raising=False)
    docs = write_python_docs(tmp_path / "docs")
    proj = tmp_path / "proj"
    with llama_server(tmp_path) as base_url:
        made = runner.invoke(app, ["new", str(proj), "--task", "Questions about Python statements"])
        assert made.exit_code == 0, made.output
        # the 135M model behind the server: its short prompts and chunks (its context is 2,048 tokens)
        flags = [*openai_flags(base_url, "smollm2"), "--prompts", "small"]
        assert runner.invoke(app, ["settings", str(proj), *flags]).exit_code == 0
        result = runner.invoke(app, ["concepts", str(proj), "extract", "--docs", str(docs), "--json"])
        assert result.exit_code in (0, PARTIAL_EXIT), result.output
        extracted = json.loads(result.stdout)
        assert extracted["read"] == 2 and extracted["extracted"] + len(extracted["failed"]) == 2
        assert extracted["llm"]["calls"] >= 2
        outcomes = {}
        for level in (1, 2, 3):
            args = ["concepts", str(proj), "synth", "--level", str(level), "--n", "2", "--json"]
            result = runner.invoke(app, args)
            outcomes[level] = result.exit_code
            if level_refused(result, level):  # levels 2-3 need concepts the small model may not have given
                continue
            assert result.exit_code in (0, PARTIAL_EXIT), result.output
            made_json = json.loads(result.stdout)
            assert made_json["added"] + made_json["short"] == 2 and made_json["sample_set"] == f"concepts-l{level}"
    assert outcomes[1] in (0, PARTIAL_EXIT)  # level 1 needs only the documents
    with Project.open(proj) as project:
        assert {d.doc_id for d in load_documents(project)} == {"pass.txt", "break.txt"}
        stored = load_concepts(project)
        assert len(stored) == extracted["extracted"] and not {d.doc_id for d in stored} & set(extracted["failed"])
        assert all(t.concepts for d in stored for t in d.topics)
        for name, count in project.sample_sets().items():
            samples = project.samples(sample_set=name)
            assert len(samples) == count and samples
            assert all(s.extra["level"] == int(name[-1]) and s.extra["documents"] for s in samples)
            assert all(s.model == "smollm2" and s.instruction.strip() for s in samples)
