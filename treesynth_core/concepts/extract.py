"""Concept extraction: each document asked once for its level, subject, topics and key concepts.

One call per document (a re-ask when the reply does not parse), cached by the run's recording LLM;
the concepts are stored in the project as they arrive, so a rerun asks only for the documents not
extracted yet. A document with no usable reply is counted as failed and left out of the graph; a
rerun with another ``seed`` asks it again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import Cancelled, ParseError
from ..llm.base import LLM, ChatRequest, in_completion_order, useful_concurrency
from ..llm.pricing import cost as pricing_cost
from ..llm.pricing import price_for
from ..llm.settings import BackendSettings
from ..prompts import templates as P
from ..prompts.replies import ask_json
from ..seeding import stable_seed
from .documents import Document
from .model import ConceptsReply, DocConcepts
from .store import BlobStore, load_concepts, load_documents, save_concepts

Progress = Callable[[int, int, str], None]
#: One ask plus one re-ask when the reply does not parse.
EXTRACT_ATTEMPTS = 2


@dataclass(frozen=True)
class ExtractOptions:
    seed: int = 0
    temperature: float = 0.2
    max_tokens: int = P.concepts_budget()
    max_calls: int | None = None


@dataclass
class ExtractReport:
    documents: int = 0
    extracted: int = 0
    already: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExtractPlan:
    documents: int
    todo: int
    calls: int
    calls_max: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    model: str

    def summary(self) -> str:
        cost = "unknown price" if self.cost_usd is None else f"~${self.cost_usd:.2f}"
        return (
            f"{self.todo} of {self.documents} documents to extract: about {self.calls} calls (at most "
            f"{self.calls_max}), ~{self.prompt_tokens + self.completion_tokens:,} tokens, {cost} on {self.model}"
        )


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
    price = price_for(model, settings)
    cost = None if price is None else pricing_cost(prompt, completion, price)
    return ExtractPlan(
        len(docs), len(todo), len(todo), len(todo) * EXTRACT_ATTEMPTS * 3, prompt, completion, cost, model
    )


def extraction_request(doc: Document, options: ExtractOptions, profile: P.Profile) -> ChatRequest:
    return ChatRequest.chat(
        None,
        P.concepts_prompt(doc.text, profile=profile),
        temperature=options.temperature,
        max_tokens=options.max_tokens,
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

    async def one(doc: Document) -> tuple[Document, DocConcepts | None]:
        if cancel is not None and cancel.is_set():
            raise Cancelled("extraction stopped; the concepts extracted so far are saved")
        async with gate:
            try:
                reply, _ = await ask_json(
                    llm,
                    extraction_request(doc, options, profile),
                    ConceptsReply,
                    attempts=EXTRACT_ATTEMPTS,
                    what="concepts",
                )
            except ParseError:
                return doc, None
        return doc, reply.concepts(doc.doc_id)

    finished = 0
    async with in_completion_order(one(doc) for doc in todo) as results:
        for next_done in results:
            doc, concepts = await next_done
            finished += 1
            if concepts is None:
                report.failed.append(doc.doc_id)
            else:
                done = sorted([*done, concepts], key=lambda d: order.get(d.doc_id, len(order)))
                save_concepts(store, done)
                report.extracted += 1
            if progress:
                progress(finished, len(todo), f"{report.extracted} extracted, {len(report.failed)} failed")
    return report
