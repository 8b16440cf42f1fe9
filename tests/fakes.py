"""A scripted fake LLM: the test double behind the same protocol as the real backends.

By default it answers every purpose (pivots, criterion, coverage, synth, response) with plausible,
deterministic JSON derived from the prompt and seed. Tests push exact replies (or exceptions) for a
purpose with :meth:`ScriptedLLM.enqueue` to script malformed output, and read ``history``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import defaultdict, deque
from collections.abc import Iterable

import numpy as np

from treesynth_core.coverage.features import embeddings as E
from treesynth_core.llm.base import ChatRequest, ChatResult

#: Criteria the fake proposes, in order of depth, with the values it knows for each.
CRITERIA: list[tuple[str, list[str]]] = [
    ("Operation", ["addition", "subtraction", "multiplication", "division"]),
    ("Entity", ["fruit", "money", "animals"]),
    ("Setting", ["school", "market", "farm"]),
    ("Difficulty", ["easy", "hard"]),
]


class ScriptedLLM:
    backend = "fake"

    def __init__(self, model: str = "fake-model", *, delay: float = 0.0, coverage_extra: int = 1) -> None:
        self.model = model
        self.delay = delay
        self.coverage_extra = coverage_extra
        self.history: list[ChatRequest] = []
        self.queues: dict[str, deque[str | ChatResult | BaseException]] = defaultdict(deque)
        self.closed = False

    def enqueue(self, purpose: str, replies: Iterable[str | ChatResult | BaseException]) -> None:
        """Script the next replies for ``purpose`` (consumed before the default behaviour). A
        :class:`ChatResult` is returned as it is (e.g. with ``finish_reason="length"``)."""
        self.queues[purpose].extend(replies)

    def calls(self, purpose: str | None = None) -> int:
        return sum(1 for r in self.history if purpose is None or r.purpose() == purpose)

    async def complete(self, request: ChatRequest) -> ChatResult:
        self.history.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        purpose = request.purpose()
        queue = self.queues.get(purpose)
        if queue:
            item = queue.popleft()
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, ChatResult):
                return item
            return ChatResult(text=item, model=self.model, prompt_tokens=10, completion_tokens=10)
        text = getattr(self, f"_{purpose}", self._plain)(request)
        return ChatResult(
            text=text,
            model=self.model,
            prompt_tokens=len(request.messages[-1][1]) // 4,
            completion_tokens=len(text) // 4,
        )

    async def aclose(self) -> None:
        self.closed = True

    # -- default behaviour per purpose --------------------------------------------------------------
    @staticmethod
    def _prompt(request: ChatRequest) -> str:
        """The original user prompt (re-asks append an assistant turn and a repair message)."""
        return next(content for role, content in request.messages if role == "user")

    @staticmethod
    def _count(prompt: str, default: int = 5) -> int:
        match = re.search(r"exactly (\d+) (?:strings|values)", prompt)
        return int(match.group(1)) if match else default

    def _depth(self, request: ChatRequest) -> int:
        prompt = self._prompt(request)
        match = re.search(r"(\[\{.*?\}\])", prompt, re.DOTALL)
        return len(json.loads(match.group(1))) if match else 0

    def _pivots(self, request: ChatRequest) -> str:
        n = self._count(self._prompt(request))
        return json.dumps({"samples": [f"pivot {i} (seed {request.seed})" for i in range(n)]})

    def _criterion(self, request: ChatRequest) -> str:
        prompt = self._prompt(request)
        n = self._count(prompt)
        used = re.search(r"already used: (.*)\.\n", prompt)
        used_text = used.group(1) if used else ""
        for name, values in CRITERIA:
            if f'"{name}"' not in used_text:
                return json.dumps({"criterion": name, "values": [values[i % 2] for i in range(n)]})
        return json.dumps({"criterion": "Tone", "values": ["formal"] * n})

    def _coverage(self, request: ChatRequest) -> str:
        prompt = self._prompt(request)
        match = re.search(r'criterion "(.*?)"', prompt)
        name = match.group(1) if match else ""
        known = dict(CRITERIA).get(name, [])
        listed = set(re.findall(r"^- (.*)$", prompt, re.MULTILINE))
        missing = [v for v in known if v not in listed][: self.coverage_extra]
        return json.dumps({"new_values": missing, "complete": True})

    def _synth(self, request: ChatRequest) -> str:
        n = self._count(self._prompt(request))
        path = re.search(r"(\[\{.*?\}\])", self._prompt(request), re.DOTALL)
        tag = " / ".join(d["value"] for d in json.loads(path.group(1))) if path else "root"
        words = ["apples", "trains", "coins", "books", "pencils", "cakes", "boats", "shirts", "lamps", "chairs"]
        return json.dumps(
            {
                "samples": [
                    f"[{tag}] Problem {request.seed}-{i}: how many {words[((request.seed or 0) + i) % 10]} "
                    f"does person {i} have after {i + 2} {words[i % 10]} are counted twice by {request.seed}?"
                    for i in range(n)
                ]
            }
        )

    def _route(self, request: ChatRequest) -> str:
        """The first listed value whose words all appear in the sample, else "none of these"."""
        prompt = self._prompt(request)
        sample = prompt.split("Sample:\n", 1)[1].split("\n\nWhich value", 1)[0].lower()
        values = request.schema["properties"]["value"]["enum"] if request.schema else []
        for value in values[:-1]:
            if all(word in sample for word in value.lower().split()):
                return json.dumps({"value": value})
        return json.dumps({"value": values[-1] if values else "none of these"})

    def _concepts(self, request: ChatRequest) -> str:
        """Two topics from the document's words: the first six distinct longer words, and the next six."""
        words = list(dict.fromkeys(w.lower() for w in re.findall(r"[A-Za-z_]{5,}", self._prompt(request))))
        words = [w for w in words if w not in {"document", "analyze", "identify", "knowledge", "expert", "education"}]
        first, second = words[:6] or ["text"], words[6:12] or words[:6] or ["text"]
        topics = [
            {"topic": f"{first[0]} basics", "concepts": first},
            {"topic": f"{second[0]} details", "concepts": second},
        ]
        return json.dumps({"level": "undergraduate", "subject": "Python", "topics": topics})

    def _questions(self, request: ChatRequest) -> str:
        """``maxItems`` questions naming the prompt's seed; level-1 items (objects) tagged original/new."""
        items = request.schema["properties"]["questions"] if request.schema else {}
        n = items.get("maxItems", 3)
        texts = [
            f"Question {request.seed}-{i}: how does rule {i} of this text apply to case {i + 7}?" for i in range(n)
        ]
        if items.get("items", {}).get("type") == "object":
            tags = ["original" if i == 0 else "new" for i in range(n)]
            return json.dumps({"questions": [{"question": t, "origin": o} for t, o in zip(texts, tags, strict=True)]})
        return json.dumps({"questions": texts})

    def _response(self, request: ChatRequest) -> str:
        return "Answer: " + self._prompt(request)[:40]

    def _plain(self, request: ChatRequest) -> str:
        return "ok"


class HashEmbedder(E.TextEmbedder):
    """A deterministic fake: bag of hashed words, L2-normalized; records what it embedded."""

    def __init__(self, dim: int = 16, name: str = "emb:fake") -> None:
        self.name = name
        self._dim = dim
        self.seen: list[str] = []

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts, batch_size=64, progress=None):
        self.seen += list(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, sum(map(ord, word)) % self._dim] += 1.0
            out[i, 0] += 1e-3
            if progress:
                progress(i + 1, len(texts), "embedding")
        return E._unit_rows(out)


class GatedLLM(ScriptedLLM):
    """The scripted LLM, answering only once ``gate`` is set: a job that runs until the test lets it end."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    async def complete(self, request: ChatRequest) -> ChatResult:
        while not self.gate.is_set():
            await asyncio.sleep(0.02)
        return await super().complete(request)
