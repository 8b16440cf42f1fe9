"""Concept extraction: each document asked once for its level, subject, topics and key concepts.

One call per document (a re-ask when the reply does not parse), cached by the run's recording LLM;
the concepts are stored in the project as they arrive, so a rerun asks only for the documents not
extracted yet. A document with no usable reply is counted as failed and left out of the graph; a
rerun with another ``seed`` asks it again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import Cancelled, ParseError
from ..generate.shortfall import Shortfall
from ..llm.base import LLM, ChatRequest, in_completion_order, useful_concurrency
from ..llm.settings import BackendSettings
from ..progress import Progress
from ..prompts import templates as P
from ..prompts.replies import BUDGET_RETRIES, ask_json
from ..seeding import stable_seed
from .documents import Document
from .model import ConceptsReply, DocConcepts
from .plan import Spend
from .store import BlobStore, load_concepts, load_documents, save_concepts

#: One ask plus one re-ask when the reply does not parse.
EXTRACT_ATTEMPTS = 2


@dataclass(frozen=True)
class ExtractOptions:
    seed: int = 0
    temperature: float = 0.2
    #: The most tokens an extraction reply may take (its larger-budget retries included); the first
    #: budget is the profile's :func:`~treesynth_core.prompts.templates.concepts_budget`, at most this.
    max_tokens: int = 2 * P.concepts_budget()
    max_calls: int | None = None


@dataclass
class ExtractReport:
    documents: int = 0
    extracted: int = 0
    already: int = 0
    failed: list[str] = field(default_factory=list)
    #: Why the last failed document got no usable reply.
    last_problem: str = ""

    def shortfall(self) -> Shortfall | None:
        """The documents that got no usable reply (None when every one did); they stay to extract."""
        if not self.failed:
            return None
        return Shortfall(
            "documents extracted",
            self.extracted,
            self.extracted + len(self.failed),
            "documents",
            len(self.failed),
            self.last_problem,
            "run concepts extract again",
        )


@dataclass(frozen=True)
class ExtractPlan:
    documents: int
    todo: int
    spend: Spend

    def summary(self) -> str:
        return f"{self.todo} of {self.documents} documents to extract: {self.spend.line()}"


def pending(docs: Sequence[Document], done: Sequence[DocConcepts]) -> list[Document]:
    have = {d.doc_id for d in done}
    return [d for d in docs if d.doc_id not in have]


def plan_extraction(
    docs: Sequence[Document], done: Sequence[DocConcepts], *, model: str, settings: BackendSettings | None = None
) -> ExtractPlan:
    profile = settings.prompt_profile() if settings is not None else "paper"
    todo = pending(docs, done)
    prompt = sum(P.approx_tokens(P.concepts_prompt(d.text, profile=profile)) for d in todo)
    completion = len(todo) * 400  # 5 topics of ~10 concepts, in JSON
    # each call: its attempts, each with up to BUDGET_RETRIES larger-budget retries
    calls_max = len(todo) * EXTRACT_ATTEMPTS * (1 + BUDGET_RETRIES)
    return ExtractPlan(len(docs), len(todo), Spend.priced(len(todo), calls_max, (prompt, completion), model, settings))


def extraction_request(doc: Document, options: ExtractOptions, profile: P.Profile) -> ChatRequest:
    return ChatRequest.chat(
        None,
        P.concepts_prompt(doc.text, profile=profile),
        temperature=options.temperature,
        max_tokens=min(options.max_tokens, P.concepts_budget(profile)),
        seed=stable_seed(options.seed, "concepts", doc.doc_id),
        schema=P.concepts_schema(),
        schema_name="concepts",
        meta={"purpose": "concepts", "doc_id": doc.doc_id},
    )


async def extract_concepts(
    store: BlobStore,
    llm: LLM,
    options: ExtractOptions,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    concurrency: int = 8,
) -> ExtractReport:
    """Extract the concepts of every stored document not extracted yet; store them as they arrive."""
    docs = load_documents(store)
    done = load_concepts(store)
    todo = pending(docs, done)
    report = ExtractReport(documents=len(docs), already=len(docs) - len(todo))
    profile = P.profile_for(llm)
    gate = asyncio.Semaphore(useful_concurrency(llm, concurrency))
    order = {d.doc_id: i for i, d in enumerate(docs)}

    async def one(doc: Document) -> tuple[Document, DocConcepts | str]:
        async with gate:  # every document's task starts at once: check the stop when its turn comes
            if cancel is not None and cancel.is_set():
                raise Cancelled("extraction stopped; the concepts extracted so far are saved")
            try:
                request = extraction_request(doc, options, profile)
                cap = max(options.max_tokens, request.max_tokens or 0)
                reply, _ = await ask_json(
                    llm, request, ConceptsReply, attempts=EXTRACT_ATTEMPTS, what="concepts", max_tokens_cap=cap
                )
            except ParseError as exc:
                return doc, str(exc)
        return doc, reply.concepts(doc.doc_id)

    finished = 0
    async with in_completion_order(one(doc) for doc in todo) as results:
        for next_done in results:
            doc, concepts = await next_done
            finished += 1
            if isinstance(concepts, str):
                report.failed.append(doc.doc_id)
                report.last_problem = concepts
            else:
                done = sorted([*done, concepts], key=lambda d: order.get(d.doc_id, len(order)))
                save_concepts(store, done)
                report.extracted += 1
            if progress:
                progress(finished, len(todo), f"{report.extracted} extracted, {len(report.failed)} failed")
    return report
