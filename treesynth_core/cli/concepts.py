"""The ``treesynth concepts DIR COMMAND`` group: SynthLLM's document-grounded questions.

Thin wrappers over :mod:`treesynth_core.concepts`: ``extract`` (documents -> concepts, the
``concepts-extract`` job), ``graph`` (GraphML and stats), ``walks`` (a preview of level-3 walks and
their grounding), ``synth`` (questions at level 1, 2 or 3, the ``concepts-synth`` job), ``import`` and
``export`` (concepts JSONL), ``propose`` (a node's values from the concept graph). :mod:`treesynth_core.cli.app` adds the group as ``concepts``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..concepts.documents import CHUNK_CHARS, PYTHON_DOCS, SMALL_CHUNK_CHARS
from ..concepts.extract import ExtractOptions
from ..concepts.plan import Spend
from ..concepts.propose import DEFAULT_K
from ..concepts.questions import QuestionOptions
from ..errors import DataError, TreeSynthError
from ..llm.timing import CONCEPT_PURPOSES, QUESTION_PURPOSES, RESPONSE_PURPOSES, TimeRange, estimate_time, logged_model
from .common import (
    NO_LLM_RUN_OPTIONS,
    AnswerOpt,
    DirArg,
    JsonOpt,
    LlmRunOptions,
    VerifyOpt,
    call_line,
    emit,
    err,
    exit_if_short,
    handle_errors,
    llm_json,
    open_project,
    option_groups,
    run_job,
)

concepts_app = typer.Typer(
    help=(
        "SynthLLM's document-grounded questions: treesynth concepts DIR COMMAND ... Extract each document's "
        "level, subject, topics and key concepts once (extract), build the concept graph (graph), then make "
        "questions at level 1, 2 or 3 (synth) into a sample set of their own (route it into the tree with treesynth "
        "route DIR --set NAME), or propose a tree node's values from the graph (propose)."
    ),
    no_args_is_help=True,
)

EstimateOpt = Annotated[
    bool, typer.Option("--estimate", help="Only print the estimate of calls, tokens, cost and time.")
]
MaxCostOpt = Annotated[
    float | None, typer.Option("--max-cost", help="Refuse to start above this estimated cost in USD.")
]


@concepts_app.callback()
def _concepts_group(ctx: typer.Context, directory: DirArg) -> None:
    ctx.obj = directory


def _dir(ctx: typer.Context) -> Path:
    return Path(ctx.obj)


@concepts_app.command("extract")
@handle_errors
@option_groups
def extract(
    ctx: typer.Context,
    docs: Annotated[
        str | None,
        typer.Option(
            "--docs",
            help=f"A folder of .md/.txt/.html documents, or {PYTHON_DOCS} for the reference text of Python's "
            "help() topics (ships with Python).",
        ),
    ] = None,
    sample_set: Annotated[
        str | None, typer.Option("--set", help="Take the documents from this sample set's text (an import).")
    ] = None,
    encoding: Annotated[
        str, typer.Option("--encoding", help="Encoding of the document files (decoded strictly).")
    ] = "utf-8",
    chunk_chars: Annotated[
        int | None,
        typer.Option(
            "--chunk-chars",
            help=f"Split longer documents into chunks of at most this many characters, each a document "
            f"(nothing is cut off). Default: {CHUNK_CHARS:,}, or {SMALL_CHUNK_CHARS:,} with the small prompt "
            "profile (the embedded model's context).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the extraction calls (another asks anew).")] = 0,
    max_cost: MaxCostOpt = None,
    estimate: EstimateOpt = False,
    llm_run: LlmRunOptions = NO_LLM_RUN_OPTIONS,
    as_json: JsonOpt = False,
) -> None:
    """Extract each document's level, subject, 1-5 topics and 5-20 key concepts per topic (once; stored).

    Exit status: 0 done, 1 an error or no document extracted (every reply unusable), 3 some documents
    got no usable reply (they stay to extract: run extract again to retry them).
    """
    from ..concepts.documents import read_documents, sample_set_documents, split_documents
    from ..concepts.extract import plan_extraction
    from ..concepts.store import load_concepts, load_documents, save_documents

    if docs and sample_set:
        raise TreeSynthError("give --docs FOLDER or --set NAME, not both")
    with open_project(_dir(ctx)) as project:
        settings = llm_run.backend.resolve(project)
        size = chunk_chars or (SMALL_CHUNK_CHARS if settings.prompt_profile() == "small" else CHUNK_CHARS)
        if size < 200:
            raise TreeSynthError("--chunk-chars must be at least 200")
        note, read_json = "", {}
        stored = {d.doc_id: d for d in load_documents(project)}
        if docs or sample_set:
            if docs:
                read = read_documents(docs, encoding=encoding, chunk_chars=size)
            else:
                assert sample_set is not None
                read = split_documents(sample_set_documents(project.samples(sample_set=sample_set), sample_set), size)
            if not read.documents:
                raise DataError(f"every document is empty ({len(read.empty_skipped)} skipped): nothing to extract")
            stored.update({d.doc_id: d for d in read.documents})
            note = "Read " + read.summary() + "."
            read_json = {"read": len(read.documents), "chunked": read.chunked, "empty_skipped": read.empty_skipped}
        documents = list(stored.values())
        if not documents:
            raise TreeSynthError("no documents yet: pass --docs FOLDER (or --docs example:python-docs) or --set NAME")
        plan = plan_extraction(documents, load_concepts(project), model=logged_model(settings), settings=settings)
        caps = (llm_run.max_calls, max_cost)
        what = {"documents": plan.documents, "todo": plan.todo, **read_json}  # with what was split or skipped
        took = estimate_time(project, settings, CONCEPT_PURPOSES, plan.spend.calls)
        summary = (note + "\n" if note else "") + plan.summary()
        if _estimated(estimate, as_json, what, plan.spend, summary, caps, took):
            return  # nothing stored: an estimate changes nothing
        if read_json:
            save_documents(project, documents)
        options = ExtractOptions(seed=seed, max_calls=llm_run.max_calls)
        report, stats = run_job(
            project,
            "concepts-extract",
            options,
            {"seed": seed},
            settings,
            llm_run,
            as_json,
            description="Extracting concepts",
            eager=True,
            total=plan.todo,
        )
        data = {
            "documents": report.documents,
            "extracted": report.extracted,
            "already": report.already,
            "failed": report.failed,
            **read_json,
            "llm": llm_json(stats),
        }
        failed = (
            f"\n{len(report.failed)} documents gave no usable reply and are left out of the graph; "
            f"--seed {seed + 1} asks them again."
            if report.failed
            else ""
        )
        emit(
            as_json,
            data,
            f"Extracted the concepts of {report.extracted} documents "
            f"({report.already} done before).{failed}\n{call_line(stats)}",
        )
        exit_if_short(report)


def _estimated(
    estimate: bool,
    as_json: bool,
    what: dict,
    spend: Spend,
    summary: str,
    caps: tuple[int | None, float | None],
    took: TimeRange,
) -> bool:
    """With --estimate, print the estimate (its time ``took`` too) and say so (True); else check the
    caps and print the plan."""
    if estimate:
        emit(as_json, {**what, **spend.to_json(), "time": took.to_json()}, f"Estimate: {summary}; time {took.text()}")
        return True
    spend.check(*caps)
    if not as_json:
        err.print("Plan: " + summary, highlight=False)
    return False


def _concepts(project: object) -> list:
    from ..concepts.store import load_concepts

    docs = load_concepts(project)  # type: ignore[arg-type]
    if not docs:
        raise TreeSynthError("no concepts yet: run treesynth concepts DIR extract --docs FOLDER, or import a JSONL")
    return docs


@concepts_app.command("graph")
@handle_errors
def graph(
    ctx: typer.Context,
    out_path: Annotated[Path | None, typer.Option("--out", help="Write the graph as GraphML here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the concept graph (topics and concepts; an edge per co-occurrence in a document, weight
    log(count + eps)); print its stats and optionally write GraphML."""
    from ..concepts.graph import build_graph, graph_stats, write_graphml

    with open_project(_dir(ctx)) as project:
        docs = _concepts(project)
    start = time.perf_counter()
    g = build_graph(docs)
    seconds = time.perf_counter() - start
    stats = graph_stats(g)
    if out_path is not None:
        write_graphml(g, out_path)
    top = sorted(stats.degree_histogram.items(), key=lambda kv: -kv[0])[:1]
    emit(
        as_json,
        {
            "documents": len(docs),
            **stats.to_json(),
            "build_s": round(seconds, 4),
            "graphml": str(out_path) if out_path else None,
        },
        f"Concept graph of {len(docs)} documents: {stats.topics} topics, {stats.concepts} concepts, {stats.edges:,} edges "
        f"(topic-topic {stats.edges_by_part['topic-topic']:,}, topic-concept {stats.edges_by_part['topic-concept']:,}, "
        f"concept-concept {stats.edges_by_part['concept-concept']:,}); mean degree {stats.mean_degree}, "
        f"max {top[0][0] if top else 0}; built in {seconds:.2f} s." + (f"\nWrote {out_path}" if out_path else ""),
    )


@concepts_app.command("walks")
@handle_errors
def walks(
    ctx: typer.Context,
    count: Annotated[int, typer.Option("--count", "-k", help="How many walks to show.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the walks (the same seed, the same walks).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Preview level-3 walks on the concept graph and the two documents that ground each."""
    from ..concepts.preview import preview_walks

    with open_project(_dir(ctx)) as project:
        docs = _concepts(project)
    rows: list[dict[str, Any]] = [
        {
            "topics": list(walk.topics),
            "concepts": list(walk.concepts),
            "documents": [{"doc_id": d, "jaccard": round(s, 4)} for d, s in walk.documents],
        }
        for walk in preview_walks(docs, count, seed=seed)
    ]
    text = "\n".join(
        f"{i}. {' -> '.join(r['topics'])} | {'; '.join(r['concepts'])} | "
        + ", ".join(f"{d['doc_id']} ({d['jaccard']:.2f})" for d in r["documents"])
        for i, r in enumerate(rows, 1)
    )
    from rich.markup import escape

    # labels are the model's (or a file's) text: never rich markup
    emit(as_json, rows, escape(text) if text else "no walks: the graph has no topics")


@concepts_app.command("synth")
@handle_errors
@option_groups
def synth(
    ctx: typer.Context,
    level: Annotated[
        int,
        typer.Option(
            "--level",
            help="1: from one document; 2: combine 2-3 of a document's concepts; 3: concepts of different topics along a graph walk.",
        ),
    ] = QuestionOptions.level,
    n: Annotated[int, typer.Option("--n", help="Questions the sample set should hold.")] = QuestionOptions.n,
    sample_set: Annotated[
        str | None, typer.Option("--set", help="The sample set to fill (default concepts-l<LEVEL>).")
    ] = None,
    per_call: Annotated[
        int,
        typer.Option(
            "--per-call", help="Questions asked for in one call (default: 5 at levels 1-2, 3 at level 3, as the paper)."
        ),
    ] = 0,
    responses: Annotated[
        bool, typer.Option("--responses", help="Also answer each question (a second call per question).")
    ] = False,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="Seed of the walks, concept picks and calls: the same seed asks the same questions (served from the cache).",
        ),
    ] = 0,
    max_tokens: Annotated[
        int,
        typer.Option(
            "--max-tokens",
            help="The most tokens a questions call may use: its first budget (sized from --per-call) and the larger budgets of retries after a reply is cut off stop here.",
        ),
    ] = QuestionOptions.max_tokens,
    verify: VerifyOpt = QuestionOptions.verify,
    answer: AnswerOpt = QuestionOptions.answer,
    max_cost: MaxCostOpt = None,
    estimate: EstimateOpt = False,
    llm_run: LlmRunOptions = NO_LLM_RUN_OPTIONS,
    as_json: JsonOpt = False,
) -> None:
    """Make questions from the documents at level 1, 2 or 3 into a sample set (level, documents and
    concepts recorded per sample).

    Exit status: 0 done, 1 an error or no question made (every reply unusable), 3 the set left short by
    calls that got no usable reply (run synth again to fill it).
    """
    from ..concepts.questions import plan_questions
    from ..store.samples import check_dataset_set

    try:
        options = QuestionOptions(
            level=level,
            n=n,
            sample_set=sample_set or "",
            per_call=per_call,
            responses=responses,
            seed=seed,
            max_tokens=max_tokens,
            max_calls=llm_run.max_calls,
            max_cost=max_cost,
            verify=verify,
            answer=answer,
        )
    except ValueError as exc:
        raise TreeSynthError(str(exc)) from None
    check_dataset_set(options.default_set())
    with open_project(_dir(ctx)) as project:
        settings = llm_run.backend.resolve(project)
        plan = plan_questions(project, options, model=logged_model(settings), settings=settings)
        what = {"level": level, "questions": plan.need}
        purposes = QUESTION_PURPOSES + (RESPONSE_PURPOSES if responses else ())
        took = estimate_time(project, settings, purposes, plan.spend.calls)
        if _estimated(estimate, as_json, what, plan.spend, plan.summary(), (llm_run.max_calls, max_cost), took):
            return
        params = {
            "level": level,
            "n": n,
            "sample_set": options.default_set(),
            "per_call": per_call,
            "responses": responses,
            "seed": seed,
            "max_tokens": max_tokens,
        }
        if verify:
            params |= {"verify": verify, "answer": answer}
        report, stats = run_job(
            project,
            "concepts-synth",
            options,
            params,
            settings,
            llm_run,
            as_json,
            description=f"Level-{level} questions",
            eager=True,
            total=n,
        )
        data = {
            "sample_set": report.sample_set,
            "level": report.level,
            "added": report.added,
            "total": report.total,
            "duplicates_dropped": report.duplicates,
            "failed_calls": report.failed_calls,
            "short": report.short,
            "responses_cut_off": report.responses_cut_off,
            "llm": llm_json(stats),
        }
        if verify:
            data |= {
                "verify": verify,
                "verified": report.verified,
                "rejected": report.rejected,
                "rejected_reasons": report.verification.reasons,
            }
        short = (
            f"\n{report.short} short of --n {n} (duplicates or unusable replies); --seed {seed + 1} asks new questions."
            if report.short
            else ""
        )
        emit(
            as_json,
            data,
            f"Added {report.added} level-{level} questions to {report.sample_set!r} ({report.total} in the set; "
            f"{report.duplicates} duplicates dropped).{short}{_verify_line(report, verify)}\n{call_line(stats)}",
        )
        exit_if_short(report)


def _verify_line(report: Any, draws: int) -> str:
    """What verification did ("" when it was off)."""
    if not draws:
        return ""
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(report.verification.reasons.items()))
    return (
        f"\nVerification ({draws} draws, majority vote): {report.verified} verified, {report.rejected} rejected"
        + (f" ({reasons})" if reasons else "")
        + "."
    )


@concepts_app.command("import")
@handle_errors
def import_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Concepts JSONL: one document a line.", metavar="FILE.jsonl")],
    replace_all: Annotated[
        bool, typer.Option("--replace", help="Replace every stored concept (default: add and update by doc_id).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Import concepts from JSONL ({"doc_id", "level", "subject", "topics": [{"topic", "concepts"}]} a line);
    a bad line imports nothing."""
    from ..concepts.model import read_jsonl
    from ..concepts.store import load_concepts, save_concepts

    docs = read_jsonl(file)
    with open_project(_dir(ctx)) as project:
        merged = {} if replace_all else {d.doc_id: d for d in load_concepts(project)}
        merged.update({d.doc_id: d for d in docs})
        save_concepts(project, list(merged.values()))
    emit(
        as_json,
        {"imported": len(docs), "total": len(merged)},
        f"Imported the concepts of {len(docs)} documents; {len(merged)} in the project.",
    )


@concepts_app.command("export")
@handle_errors
def export_cmd(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Where to write the concepts JSONL.", metavar="FILE.jsonl")],
    as_json: JsonOpt = False,
) -> None:
    """Export the stored concepts as JSONL, one document a line."""
    from ..concepts.model import write_jsonl

    with open_project(_dir(ctx)) as project:
        docs = _concepts(project)
    lines = write_jsonl(docs, file)
    emit(as_json, {"documents": lines, "file": str(file)}, f"Wrote the concepts of {lines} documents to {file}")


@concepts_app.command("propose")
@handle_errors
def propose(
    ctx: typer.Context,
    node: Annotated[
        str,
        typer.Option("--node", help="Node id (or unique prefix), 'root', or a value path like 'loops > for'."),
    ],
    k: Annotated[int, typer.Option("--k", "-k", help="How many values to propose.")] = DEFAULT_K,
    kind: Annotated[
        str, typer.Option("--kind", help="Propose the documents' topics or their key concepts: topic|concept.")
    ] = "topic",
    criterion: Annotated[
        str,
        typer.Option(
            "--criterion",
            help="The criterion of the new values (default Topic, or Concept with --kind concept). The node's own "
            "criterion adds them beside its values; another replaces its split (undo restores it).",
        ),
    ] = "",
    apply: Annotated[
        bool, typer.Option("--apply", help="Add them to the tree as proposed values (one undoable edit).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Propose a node's values from the concept graph: the topics (or concepts) of the documents that
    match the node's path, scored by frequency there times log inverse document frequency; those on the
    path are left out. Prints them with the documents behind each; --apply adds them for review."""
    from rich.markup import escape

    from ..concepts.propose import propose_values
    from ..tree.edits import resolve_node, run_edit

    if kind not in ("topic", "concept"):
        raise TreeSynthError(f"--kind must be topic or concept, not {kind!r}")
    with open_project(_dir(ctx)) as project:
        docs = _concepts(project)
        tree = project.tree()
        target = resolve_node(tree, node)
        proposal = propose_values(tree, target.id, docs, k=k, kind=kind, criterion=criterion)  # type: ignore[arg-type]
        if apply:
            tree = run_edit(
                project,
                "propose-values",
                node_id=target.id,
                criterion=proposal.criterion,
                values=proposal.values,
            )
    where = " > ".join(proposal.path) or "the root"
    lines = [
        f"{len(proposal.candidates)} {kind} values for {where} ({proposal.criterion}), from {proposal.matched} of "
        f"{proposal.total} documents:"
    ]
    for i, c in enumerate(proposal.candidates, 1):
        docs_line = ", ".join(c.documents[:5]) + (f" +{len(c.documents) - 5}" if len(c.documents) > 5 else "")
        n_docs = f"{len(c.documents)} document" + ("s" if len(c.documents) != 1 else "")
        lines.append(f"{i}. {c.value}  (score {c.score:.2f}; {n_docs}: {docs_line})")
    text = escape("\n".join(lines))  # labels are the model's (or a file's) text: never rich markup
    if apply:
        text += (
            f"\nAdded as proposed values: review them with treesynth show {_dir(ctx)}; "
            f"undo with treesynth edit {_dir(ctx)} undo"
        )
    emit(as_json, {**proposal.to_json(), "applied": apply}, text)
