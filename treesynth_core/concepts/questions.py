"""Questions from documents at SynthLLM's three levels, into a named sample set.

- Level 1: per document, questions taken from it and newly written from it (each tagged
  ``original`` or ``new``).
- Level 2: per document, questions that each combine 2-3 of its key concepts, grounded in it. The
  paper lets the LLM pick the concepts (its R(K) operator) inside the prompt; here the picks are
  drawn in code (seeded) and listed one line per question, so they are known, recorded per sample
  and reproducible.
- Level 3: per walk on the concept graph, questions combining its concepts from different topics,
  grounded in the two documents closest to the walk (Jaccard of concept sets).

The work goes in numbered units (a document at levels 1-2, cycling through the documents; a walk at
level 3), each one call asking for ``per_call`` questions with a seed derived from the unit. Samples
are keyed ``"L<level>.<unit>:<item>"`` in the set, so a rerun is served from the cache and adds no
duplicates, and units already answered are not asked again. Near-duplicates are dropped. Optional
responses come from a second call per question, as in leaf synthesis; with ``verify`` = k, from k
draws instead, and a question is kept only when a strict majority agree on its final answer
(:mod:`~treesynth_core.generate.verify`, as Prismatic Synthesis).
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Protocol

from pydantic import BaseModel, field_validator

from ..errors import Cancelled, DataError, ParseError
from ..generate.duplicates import DuplicateFilter
from ..generate.gap_options import check_verify
from ..generate.shortfall import Shortfall
from ..generate.verify import VerifyCounts, verify
from ..llm.base import LLM, ChatRequest, ChatResult, useful_concurrency
from ..llm.settings import BackendSettings
from ..progress import Progress
from ..prompts import templates as P
from ..prompts.replies import BUDGET_RETRIES, MAX_TOKENS_CAP, ask_json, is_cut_off, is_placeholder, retry_budget
from ..seeding import stable_seed
from ..store.samples import UNROUTED, NewSample, Sample
from .documents import Document
from .graph import build_graph
from .model import DocConcepts, label_key
from .plan import Spend
from .store import BlobStore, load_concepts, load_documents
from .walks import Walk, Walker, ground, usable_walks

LEVELS = (1, 2, 3)
#: Questions asked for per call: the paper's 1-5 per document (5) at levels 1-2, 3 per walk at level 3.
PER_CALL = {1: 5, 2: 5, 3: 3}
ATTEMPTS = 2


class QuestionStore(BlobStore, Protocol):
    @property
    def task(self) -> str: ...

    @property
    def style(self) -> str: ...

    def add_samples(self, samples: Iterable[NewSample]) -> int: ...

    def samples(self, *, sample_set: str, leaf_id: str | None = None) -> list[Sample]: ...

    def sample_keys(self, leaf_id: str, *, sample_set: str) -> set[str]: ...

    def skip_keys(self, leaf_id: str, keys: Iterable[str], *, sample_set: str) -> None: ...


@dataclass(frozen=True)
class QuestionOptions:
    """What a concepts synthesis run makes: ``n`` questions at ``level`` into ``sample_set``."""

    level: int = 2
    n: int = 20
    sample_set: str = ""
    per_call: int = 0  # 0: the level's default (PER_CALL)
    responses: bool = False
    seed: int = 0
    temperature: float = 0.7
    #: The most tokens a questions call may take (its larger-budget retries included); the first
    #: budget is :func:`~treesynth_core.prompts.templates.questions_budget`, at most this.
    max_tokens: int = 2048
    response_max_tokens: int = 1024
    near_duplicate: float = 0.85
    extra_calls: int = 2
    max_calls: int | None = None
    max_cost: float | None = None
    #: Majority-vote verification of the responses: 0 is off; k draws per question, kept only when a
    #: strict majority agree on the ``answer`` extractor's final answer.
    verify: int = 0
    answer: str = "last-number"

    def __post_init__(self) -> None:
        check_verify(self.verify, self.answer, responses=self.responses)
        if self.level not in LEVELS:
            raise ValueError(f"level must be 1, 2 or 3, not {self.level}")
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if not 0 <= self.per_call <= 10:
            raise ValueError("per_call must be between 1 and 10 (0 for the level's default)")

    @property
    def questions_per_call(self) -> int:
        return self.per_call or PER_CALL[self.level]

    def default_set(self) -> str:
        return self.sample_set or f"concepts-l{self.level}"


@dataclass(frozen=True)
class Unit:
    """One call's worth of work: the documents it is grounded in and its prompt's material."""

    number: int
    documents: tuple[Document, ...]
    combos: tuple[tuple[str, ...], ...] = ()  # level 2: the concepts of each question
    by_topic: tuple[tuple[str, tuple[str, ...]], ...] = ()  # level 3: the walk's concepts by topic
    similarity: tuple[float, ...] = ()  # level 3: each grounding document's Jaccard similarity


@dataclass
class QuestionReport:
    sample_set: str = ""
    level: int = 0
    added: int = 0
    total: int = 0
    duplicates: int = 0
    failed_calls: int = 0
    responses_cut_off: int = 0
    short: int = 0
    #: Questions the run set out to make (the target less those made before it), and why the last
    #: call that got no usable reply failed.
    wanted: int = 0
    last_problem: str = ""
    #: With ``verify``: questions whose draws agreed on a final answer, and those rejected (by reason).
    verification: VerifyCounts = field(default_factory=VerifyCounts)

    @property
    def verified(self) -> int:
        return self.verification.verified

    @property
    def rejected(self) -> int:
        return self.verification.rejected

    def shortfall(self) -> Shortfall | None:
        """What unusable replies cost this run: None unless they left the level short."""
        if not self.failed_calls or not self.short:
            return None
        return Shortfall(
            "questions made",
            self.added,
            self.wanted,
            "calls",
            self.failed_calls,
            self.last_problem,
            "run concepts synth again",
        )


@dataclass(frozen=True)
class QuestionPlan:
    level: int
    need: int
    spend: Spend

    def summary(self) -> str:
        return f"level {self.level}: {self.need} questions to make: {self.spend.line()}"


# -- units ----------------------------------------------------------------------------------------


def _combos(doc: DocConcepts, count: int, rng: random.Random) -> tuple[tuple[str, ...], ...]:
    """``count`` draws of 2-3 of the document's concepts (R(K) of the paper)."""
    concepts = list(dict.fromkeys(c for t in doc.topics for c in t.concepts))
    return tuple(tuple(rng.sample(concepts, min(len(concepts), rng.choice((2, 3))))) for _ in range(count))


class Units:
    """The numbered units of a level; unit ``u`` is the same in every run with the same seed and data."""

    def __init__(self, level: int, docs: Sequence[Document], concepts: Sequence[DocConcepts], options: QuestionOptions):
        self.level, self.options = level, options
        self.text = {d.doc_id: d for d in docs}
        self.concepts = [c for c in concepts if c.doc_id in self.text] if level == 2 else list(concepts)
        if level == 1:
            self.docs = list(docs)
            if not self.docs:
                raise DataError("no documents stored: run treesynth concepts DIR extract --docs FOLDER first")
        elif level == 2:
            self.concepts = [c for c in self.concepts if len(c.concept_keys()) >= 2]
            if not self.concepts:
                raise DataError("no document has both its text and 2 or more concepts: extract concepts first")
        else:
            if not self.concepts:
                raise DataError("no concepts stored: extract or import concepts first")
            graph = build_graph(self.concepts)
            self.labels = {n: graph.nodes[n]["label"] for n in graph.nodes}
            self.walks = usable_walks(Walker(graph), seed=stable_seed(options.seed, "walks"))
            self.walked: list[Walk] = []
            self.topics_of: dict[str, list[str]] = defaultdict(list)
            for doc in self.concepts:
                for topic in doc.topics:
                    for c in topic.concepts:
                        if topic.topic not in self.topics_of[label_key(c)]:
                            self.topics_of[label_key(c)].append(topic.topic)

    def unit(self, u: int) -> Unit:
        per_call = self.options.questions_per_call
        if self.level == 1:
            return Unit(u, (self.docs[u % len(self.docs)],))
        if self.level == 2:
            doc = self.concepts[u % len(self.concepts)]
            rng = random.Random(stable_seed(self.options.seed, "combos", doc.doc_id, u))
            return Unit(u, (self.text[doc.doc_id],), combos=_combos(doc, per_call, rng))
        if len(self.walked) <= u:
            self.walked += list(islice(self.walks, u + 1 - len(self.walked)))
            if len(self.walked) <= u:
                raise DataError("the concept graph has no walk with 2 or more concepts: it needs more documents")
        walk = self.walked[u]
        grounding = ground(walk.concepts, self.concepts)
        walk_topics = [self.labels[t] for t in walk.topics]
        groups: dict[str, list[str]] = {}
        for node in walk.concepts:
            homes = self.topics_of[node.split(":", 1)[1]]
            home = next((t for t in homes if t in walk_topics), homes[0] if homes else "")
            groups.setdefault(home, []).append(self.labels[node])
        docs = tuple(self.text[d] for d, _ in grounding if d in self.text)
        return Unit(
            u,
            docs or tuple(Document(d, "") for d, _ in grounding),
            by_topic=tuple((t, tuple(cs)) for t, cs in groups.items()),
            similarity=tuple(s for _, s in grounding),
        )


def unit_request(unit: Unit, level: int, options: QuestionOptions, profile: P.Profile) -> ChatRequest:
    n = options.questions_per_call
    texts = [d.text for d in unit.documents if d.text]
    if level == 1:
        prompt = P.level1_prompt(texts[0], n, profile=profile)
    elif level == 2:
        prompt = P.level2_prompt(texts[0], unit.combos, profile=profile)
    else:
        prompt = P.level3_prompt(texts, unit.by_topic, n, profile=profile)
    return ChatRequest.chat(
        None,
        prompt,
        temperature=options.temperature,
        max_tokens=min(options.max_tokens, P.questions_budget(n, profile)),
        seed=stable_seed(options.seed, "concept-questions", level, unit.number),
        schema=P.questions_schema(n, tagged=level == 1),
        schema_name="questions",
        meta={"purpose": "questions", "level": level, "unit": unit.number},
    )


# -- replies --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    text: str
    origin: str = ""  # level 1: original | new


class QuestionsReply(BaseModel):
    """A level 2 or 3 reply: the questions as strings."""

    questions: list[str]

    @field_validator("questions")
    @classmethod
    def _kept(cls, items: list[str]) -> list[str]:
        kept = [q.strip() for q in items if q and q.strip()]
        if not kept:
            raise ValueError("no questions")
        return kept


class TaggedQuestion(BaseModel):
    question: str
    origin: str = "new"


class TaggedQuestionsReply(BaseModel):
    """A level 1 reply: each question tagged ``original`` (taken from the document) or ``new``; a
    plain string counts as new."""

    questions: list[TaggedQuestion | str]

    @field_validator("questions")
    @classmethod
    def _kept(cls, items: list[TaggedQuestion | str]) -> list[TaggedQuestion | str]:
        if not any((q if isinstance(q, str) else q.question).strip() for q in items):
            raise ValueError("no questions")
        return items

    def tagged(self) -> list[Question]:
        out = []
        for q in self.questions:
            text, origin = (q, "new") if isinstance(q, str) else (q.question, q.origin)
            if text.strip():
                out.append(Question(text.strip(), "original" if origin.strip().lower().startswith("orig") else "new"))
        return out


# -- plan and run ---------------------------------------------------------------------------------


def key_stem(options: QuestionOptions) -> str:
    prefix = "" if options.seed == 0 else f"s{options.seed}."
    return f"{prefix}L{options.level}."


def plan_questions(
    store: QuestionStore, options: QuestionOptions, *, model: str, settings: BackendSettings | None = None
) -> QuestionPlan:
    """Calls, tokens and cost of filling the set up to ``options.n`` (document lengths from the store)."""
    docs = load_documents(store)
    need = max(0, options.n - len(store.samples(sample_set=options.default_set())))
    calls = math.ceil(need / options.questions_per_call)
    typical = sum(P.approx_tokens(d.text) for d in docs) / len(docs) if docs else 500
    grounding = 2 if options.level == 3 else 1  # documents in each prompt
    prompt_tokens, completion_tokens = round(calls * (typical * grounding + 250)), need * 60
    calls_max = (calls + options.extra_calls) * ATTEMPTS * (1 + BUDGET_RETRIES)
    if options.responses:  # one more call a question (k with verification)
        draws = options.verify or 1
        calls, calls_max = calls + need * draws, calls_max + need * (draws if options.verify else 1 + BUDGET_RETRIES)
        prompt_tokens, completion_tokens = prompt_tokens + need * draws * 120, completion_tokens + need * draws * 300
    spend = Spend.priced(calls, calls_max, (prompt_tokens, completion_tokens), model, settings)
    return QuestionPlan(options.level, need, spend)


async def _answer(
    llm: LLM, store: QuestionStore, options: QuestionOptions, text: str, key: str
) -> tuple[str | None, str | None]:
    budget = min(options.response_max_tokens, options.max_tokens)
    request = ChatRequest.chat(
        None,
        P.response_prompt(store.task, store.style, text, profile=P.profile_for(llm)),
        temperature=0.7,
        max_tokens=budget,
        seed=stable_seed(options.seed, "concept-response", key, text),
        meta={"purpose": "response"},
    )
    result = await llm.complete(request)
    retries = BUDGET_RETRIES
    while retries and (bigger := retry_budget(result, budget, MAX_TOKENS_CAP)):
        budget, retries = bigger, retries - 1
        result = await llm.complete(replace(request, max_tokens=budget))
    return (None if is_cut_off(result) else result.text.strip()), result.call_id


async def make_questions(
    store: QuestionStore,
    llm: LLM,
    options: QuestionOptions,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    concurrency: int = 8,
) -> QuestionReport:
    """Fill ``options.default_set()`` up to ``options.n`` questions at ``options.level``."""
    sample_set, level, per_call = options.default_set(), options.level, options.questions_per_call
    units = Units(level, load_documents(store), load_concepts(store), options)
    profile = P.profile_for(llm)
    existing = store.samples(sample_set=sample_set)
    used = store.sample_keys(UNROUTED, sample_set=sample_set)
    stem = key_stem(options)
    used_units = {k[len(stem) :].split(":", 1)[0] for k in used if k.startswith(stem)}
    dupes = DuplicateFilter(options.near_duplicate, (s.instruction for s in existing))
    have = len(existing)
    report = QuestionReport(sample_set=sample_set, level=level, wanted=max(0, options.n - have))
    count = math.ceil(options.n / per_call) + options.extra_calls + math.ceil(max(0, len(used) - have) / per_call)
    pending = [u for u in range(count) if str(u) not in used_units]
    gate = asyncio.Semaphore(useful_concurrency(llm, concurrency))

    async def ask(unit: Unit) -> tuple[list[Question], ChatResult] | None:
        async with gate:
            try:
                request = unit_request(unit, level, options, profile)
                return await _ask(llm, request, level, options.max_tokens)
            except ParseError as exc:
                report.last_problem = str(exc)
                return None

    async def answer(text: str, key: str) -> tuple[str | None, str | None]:
        async with gate:
            return await _answer(llm, store, options, text, key)

    async def verified(text: str, key: str) -> tuple[str | None, str | None, str]:
        """The majority's response and its call, and "agree/k" (None: rejected by the vote)."""
        outcome = await verify(
            llm,
            P.response_prompt(store.task, store.style, text, profile=profile),
            draws=options.verify,
            extractor=options.answer,
            seed=options.seed,
            key=("concept", key, text),
            max_tokens=min(options.response_max_tokens, options.max_tokens),
            gate=gate,
        )
        report.verification.add(outcome.vote)
        agree = outcome.vote.answers.count(outcome.vote.answer) if outcome.vote.verified else 0
        return outcome.response, outcome.call_id, f"{agree}/{options.verify}"

    while have < options.n and pending:
        size = math.ceil((options.n - have) / per_call)
        wave, pending = [units.unit(u) for u in pending[:size]], pending[size:]
        tasks = [asyncio.ensure_future(ask(unit)) for unit in wave]
        try:
            for unit, task in zip(wave, tasks, strict=True):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("concepts synthesis stopped; the questions made so far are saved")
                outcome = await task
                spent = [f"{stem}{unit.number}:-"]
                if outcome is None:
                    report.failed_calls += 1
                    store.skip_keys(UNROUTED, spent, sample_set=sample_set)
                    continue
                questions, result = outcome
                admitted: list[tuple[str, int, Question]] = []
                for i, q in enumerate(questions):
                    if len(admitted) >= options.n - have:
                        break
                    if is_placeholder(q.text) or not dupes.admit(q.text):
                        report.duplicates += 1
                        continue
                    admitted.append((f"{stem}{unit.number}:{i}", i, q))
                answers: list[tuple[str | None, str | None]] = [(None, None)] * len(admitted)
                marks: dict[str, str] = {}
                if options.verify and admitted:
                    votes = await asyncio.gather(*(verified(q.text, key) for key, _, q in admitted))
                    kept = [(a, (text, call)) for a, (text, call, _) in zip(admitted, votes, strict=True) if text]
                    marks = {key: mark for (key, _, _), (text, _, mark) in zip(admitted, votes, strict=True) if text}
                    admitted, answers = [a for a, _ in kept], [answer for _, answer in kept]
                elif options.responses and admitted:
                    answers = list(await asyncio.gather(*(answer(q.text, key) for key, _, q in admitted)))
                    report.responses_cut_off += sum(1 for text, _ in answers if text is None)
                rows = [
                    NewSample(
                        leaf_id=UNROUTED,
                        key=key,
                        instruction=q.text,
                        path=[],
                        response=text,
                        model=llm.model,
                        call_id=result.call_id,
                        response_call_id=call_id,
                        sample_set=sample_set,
                        extra=_provenance(unit, level, i, q) | ({"verified": marks[key]} if key in marks else {}),
                    )
                    for (key, i, q), (text, call_id) in zip(admitted, answers, strict=True)
                ]
                inserted = store.add_samples(rows)
                if not inserted:
                    store.skip_keys(UNROUTED, spent, sample_set=sample_set)
                have += inserted
                report.added += inserted
                if progress:
                    progress(min(have, options.n), options.n, f"{report.added} questions added")
                if have >= options.n:
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    report.total = have
    report.short = max(0, options.n - have)
    return report


async def _ask(llm: LLM, request: ChatRequest, level: int, cap: int) -> tuple[list[Question], ChatResult]:
    """The reply's questions, through the re-ask loop of ``ask_json`` (larger budgets up to ``cap``)."""
    cap = max(cap, request.max_tokens or 0)
    if level == 1:
        tagged, result = await ask_json(
            llm, request, TaggedQuestionsReply, attempts=ATTEMPTS, what="questions", max_tokens_cap=cap
        )
        return tagged.tagged(), result
    plain, result = await ask_json(
        llm, request, QuestionsReply, attempts=ATTEMPTS, what="questions", max_tokens_cap=cap
    )
    return [Question(q) for q in plain.questions], result


def _provenance(unit: Unit, level: int, item: int, q: Question) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "provenance": "concepts",
        "level": level,
        "documents": [d.doc_id for d in unit.documents],
    }
    if level == 1:
        extra["origin"] = q.origin
    elif level == 2:
        extra["concepts"] = list(unit.combos[min(item, len(unit.combos) - 1)]) if unit.combos else []
    else:
        extra["concepts"] = [c for _, cs in unit.by_topic for c in cs]
        extra["topics"] = [t for t, _ in unit.by_topic]
        extra["similarity"] = [round(s, 4) for s in unit.similarity]
    return extra
