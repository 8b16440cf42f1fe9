"""Routing existing samples into the tree's leaves (TreeSynth-balance, arXiv 2503.17195 §3.4).

Two routers send each sample to one leaf, choosing exactly one value of each criterion on its path:

* **llm** — the paper's classifier: one call per level at temperature 0.3, whose reply must be one
  of the listed values or :data:`~treesynth_core.prompts.templates.NONE_FITS` (compared as labels:
  case, spacing and punctuation aside; "none of the above" and "none" say none fits too). A sample for which
  no value fits stops there with status ``"none"``; a sample the model could not classify after
  re-asking gets status ``"error"``. Both are stored, counted and shown — never dropped.
* **embedding** — fast: the sample's embedding against the embedding of every leaf described by
  its whole path (:func:`path_text`: the task, then each step's ``criterion: value`` and the value's
  note; every value of a sampled node's pool); the nearest leaf wins, and a best cosine below
  ``min_similarity`` counts as "none fits". On the labelled set of ``benchmarks/routing_accuracy.py``
  this beats the bare ``criterion: value`` walked level by level (leaf accuracy 34% against 22%,
  first level 67% against 48%) and the whole path walked level by level (30%, 63%).

Each route is stored per (sample, router) with the digest of the tree it was made on, so the two
routers can be compared (:func:`agreement`) and a route made on an older tree is redone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import Cancelled, Deferred, ParseError, TreeSynthError
from ..llm.base import LLM, ChatRequest, in_completion_order, useful_concurrency
from ..progress import Progress
from ..prompts import templates as P
from ..prompts.replies import RouteReply, ask_json
from ..seeding import stable_seed
from ..store.samples import UNROUTED, Route, Sample
from ..tree import model as T

ROUTERS = ("llm", "embedding")
#: How the embedding router walks the tree: straight to the nearest leaf path, or level by level.
WALKS = ("leaves", "levels")
#: The paper routes with temperature 0.3.
ROUTE_TEMPERATURE = 0.3
#: Below this cosine to every value description, the embedding router says "none fits".
MIN_SIMILARITY = 0.05
#: How models word "none fits" besides the prompt's own :data:`~treesynth_core.prompts.templates.NONE_FITS`
#: (compared normalized; a listed value of the same name wins).
NONE_WORDINGS = (P.NONE_FITS, "none of the above", "none of them", "none")


class RouteStore(Protocol):
    def tree(self) -> T.Tree: ...

    def samples(self, *, sample_set: str = ..., leaf_id: str | None = None) -> list[Sample]: ...

    def put_routes(self, routes: Iterable[Route]) -> None: ...

    def routes(self, router: str, *, sample_set: str) -> dict[int, Route]: ...

    def assign_leaves(self, assignments: Mapping[int, tuple[str, list[dict[str, str]]]]) -> None: ...


def tree_digest(tree: T.Tree) -> str:
    """A short content hash of what routing depends on: the active nodes, their criteria and values."""
    rows = sorted(
        (n.id, n.parent_id or "", n.criterion or "", n.value or "", list(n.pool))
        for n in tree.nodes.values()
        if tree.is_active(n.id)
    )
    return hashlib.blake2b(json.dumps(rows, ensure_ascii=False).encode(), digest_size=10).hexdigest()


def route_digest(tree: T.Tree, router: str) -> str:
    """What a current route of ``router`` carries: the tree's digest, and for the embedding router its
    walk (routes it made level by level, before it went to the nearest leaf path, are redone)."""
    return tree_digest(tree) + ("+leaves" if router == "embedding" else "")


@dataclass(frozen=True)
class Choice:
    """One option at a node: the child it leads to and the value written in the path."""

    child: T.Node
    value: str


def choices(tree: T.Tree, node: T.Node) -> list[Choice]:
    """The values a sample at ``node`` can take: each active child's value, or every value of a
    sampled child's pool (all leading to that child)."""
    out: list[Choice] = []
    for child in tree.children(node.id, include_pruned=False):
        for value in child.pool or (child.value or "",):
            out.append(Choice(child, value))
    return out


def value_note(tree: T.Tree, node: T.Node) -> str:
    """A person's description of a value (the note of a hand-written node, e.g. "lists of lists, lists
    of dicts"), or "" — notes that growth wrote (why a node stayed a leaf, how its split went) are not
    descriptions of the value and are left out."""
    note = node.note.strip()
    if not note or node.provenance.source != "human" or note.startswith("kept as a leaf"):
        return ""
    if any(kid.provenance.source == "llm" for kid in tree.children(node.id)):
        return ""  # the node was split by growth, which wrote its own note over the person's
    return note


def description(tree: T.Tree, choice: Choice) -> str:
    """What the embedding router compares a sample with: ``criterion: value`` and the value's note."""
    note = value_note(tree, choice.child) if not choice.child.pool else ""
    return f"{choice.child.criterion}: {choice.value}" + (f" ({note})" if note else "")


def path_text(tree: T.Tree, taken: Sequence[Choice]) -> str:
    """A path described one line each: the task, then every step's ``criterion: value (note)``."""
    return "\n".join([tree.task] * bool(tree.task) + [description(tree, c) for c in taken])


def path_description(tree: T.Tree, choice: Choice) -> str:
    """A value described with its whole path (:func:`path_text` of its ancestors' values and its own)
    — "string" under "write a function" reads differently from a bare "Main input type: string"."""
    above = [Choice(n, n.value or "") for n in tree.ancestors(choice.child.id) if n.parent_id is not None]
    return path_text(tree, [*above, choice])


def leaf_paths(tree: T.Tree) -> list[tuple[T.Node, list[Choice]]]:
    """Every active leaf with the choices that lead to it, in tree order (a sampled node's pool gives
    one path per value)."""
    out: list[tuple[T.Node, list[Choice]]] = []

    def walk(node: T.Node, taken: list[Choice]) -> None:
        options = choices(tree, node)
        if not options:
            out.append((node, taken))
        for choice in options:
            walk(choice.child, [*taken, choice])

    walk(tree.root, [])
    return out


def _step(criterion: str, value: str) -> dict[str, str]:
    return {"criterion": criterion, "value": value}


# -- the LLM router -------------------------------------------------------------------------------


class LLMRouter:
    """The paper's top-down classifier (one call per level, temperature 0.3)."""

    name = "llm"

    def __init__(self, llm: LLM, tree: T.Tree, *, seed: int = 0, attempts: int = 2, max_chars: int = 2000) -> None:
        self.llm, self.tree, self.seed, self.attempts, self.max_chars = llm, tree, seed, attempts, max_chars
        self.digest = tree_digest(tree)

    def request(self, node: T.Node, path: list[dict[str, str]], options: list[Choice], text: str) -> ChatRequest:
        values = list(dict.fromkeys(c.value for c in options))
        notes = {c.value: value_note(self.tree, c.child) for c in options if not c.child.pool}
        criterion = options[0].child.criterion or ""
        prompt = P.route_prompt(
            self.tree.task,
            self.tree.style,
            [(s["criterion"], s["value"]) for s in path],
            criterion,
            values,
            text[: self.max_chars],
            notes={v: n for v, n in notes.items() if n},
        )
        return ChatRequest.chat(
            None,
            prompt,
            temperature=ROUTE_TEMPERATURE,
            max_tokens=P.labels_budget(1),
            seed=stable_seed(self.seed, "route", node.id, text),
            schema=P.route_schema(values),
            schema_name="route",
            meta={"purpose": "route", "node_id": node.id},
        )

    async def route(self, sample_id: int, text: str) -> Route:
        node, path = self.tree.root, list[dict[str, str]]()
        none_keys = {T.normalize(w) for w in NONE_WORDINGS}
        while options := choices(self.tree, node):
            by_value = {T.normalize(c.value): c for c in options}

            def check(reply: RouteReply, by_value: dict[str, Choice] = by_value) -> str | None:
                key = T.normalize(reply.value)
                if key in by_value or key in none_keys:
                    return None
                return f'"{reply.value}" is not one of the listed values'

            request = self.request(node, path, options, text)
            try:
                reply, _ = await ask_json(
                    self.llm, request, RouteReply, attempts=self.attempts, check=check, what="value"
                )
            except (ParseError, Deferred) as exc:  # Deferred: out in a batch (``batch prepare --route``)
                return Route(sample_id, self.name, "error", node.id, None, path, str(exc), self.digest)
            key = T.normalize(reply.value)
            if key in none_keys and key not in by_value:
                criterion = options[0].child.criterion or ""
                detail = f'no value of "{criterion}" fits'
                return Route(sample_id, self.name, "none", node.id, None, path, detail, self.digest)
            chosen = by_value[key]
            path = [*path, _step(chosen.child.criterion or "", chosen.value)]
            node = chosen.child
        return Route(sample_id, self.name, "leaf", node.id, node.id, path, "", self.digest)


# -- the embedding router -------------------------------------------------------------------------


class EmbeddingRouter:
    """Nearest leaf in embedding space (no LLM): each leaf described by its whole path
    (:func:`path_text`), or with ``walk="levels"`` one level at a time, each value described by
    ``describe`` (default :func:`path_description`)."""

    name = "embedding"

    def __init__(
        self,
        embed: Callable[[list[str]], np.ndarray],
        tree: T.Tree,
        *,
        min_similarity: float = MIN_SIMILARITY,
        walk: str = "leaves",
        describe: Callable[[T.Tree, Choice], str] | None = None,
    ):
        if walk not in WALKS:
            raise TreeSynthError(f"unknown walk {walk!r}: choose {' or '.join(WALKS)}")
        self.embed, self.tree, self.min_similarity, self.walk = embed, tree, min_similarity, walk
        self.describe = describe or path_description
        self.digest = f"{tree_digest(tree)}+{walk}"
        self._values: dict[str, tuple[list[Choice], np.ndarray]] = {}
        self._leaves: tuple[list[tuple[T.Node, list[Choice]]], np.ndarray] | None = None

    def _options(self, node: T.Node) -> tuple[list[Choice], np.ndarray]:
        if node.id not in self._values:
            options = choices(self.tree, node)
            texts = [self.describe(self.tree, c) for c in options]
            matrix = np.asarray(self.embed(texts), dtype=np.float32) if texts else np.zeros((0, 1), np.float32)
            self._values[node.id] = (options, matrix)
        return self._values[node.id]

    def route_all(self, sample_ids: Sequence[int], X: np.ndarray) -> list[Route]:
        """Route every row of ``X`` (unit-norm sample embeddings, one per id) in one matrix product
        per level (``walk="levels"``) or in one against every leaf path."""
        return self._by_levels(sample_ids, X) if self.walk == "levels" else self._to_leaves(sample_ids, X)

    def _to_leaves(self, sample_ids: Sequence[int], X: np.ndarray) -> list[Route]:
        if self._leaves is None:
            paths = leaf_paths(self.tree)
            texts = [path_text(self.tree, taken) for _, taken in paths]
            self._leaves = (paths, np.asarray(self.embed(texts), dtype=np.float32))
        paths, L = self._leaves
        root = self.tree.root
        if len(paths) == 1 and paths[0][0].id == root.id:  # only the root: nothing to choose
            return [Route(int(i), self.name, "leaf", root.id, root.id, [], "", self.digest) for i in sample_ids]
        sims = X @ L.T
        best = sims.argmax(axis=1)
        out: list[Route] = []
        for sample_id, b, s in zip(sample_ids, best, sims[np.arange(len(sample_ids)), best], strict=True):
            if s < self.min_similarity:
                detail = f"no leaf is near (best cosine {s:.2f})"
                out.append(Route(int(sample_id), self.name, "none", root.id, None, [], detail, self.digest))
                continue
            leaf, taken = paths[int(b)]
            path = [_step(c.child.criterion or "", c.value) for c in taken]
            out.append(Route(int(sample_id), self.name, "leaf", leaf.id, leaf.id, path, "", self.digest))
        return out

    def _by_levels(self, sample_ids: Sequence[int], X: np.ndarray) -> list[Route]:
        out: dict[int, Route] = {}
        frontier: list[tuple[T.Node, list[int]]] = [(self.tree.root, list(range(len(sample_ids))))]
        paths: dict[int, list[dict[str, str]]] = {i: [] for i in range(len(sample_ids))}
        while frontier:
            node, rows = frontier.pop()
            options, V = self._options(node)
            if not options:
                for i in rows:
                    out[i] = Route(int(sample_ids[i]), self.name, "leaf", node.id, node.id, paths[i], "", self.digest)
                continue
            sims = X[rows] @ V.T
            best = sims.argmax(axis=1)
            groups: dict[str, list[int]] = {}
            for i, b, s in zip(rows, best, sims[np.arange(len(rows)), best], strict=True):
                if s < self.min_similarity:
                    criterion = options[0].child.criterion or ""
                    detail = f'no value of "{criterion}" is near (best cosine {s:.2f})'
                    out[i] = Route(int(sample_ids[i]), self.name, "none", node.id, None, paths[i], detail, self.digest)
                    continue
                chosen = options[int(b)]
                paths[i] = [*paths[i], _step(chosen.child.criterion or "", chosen.value)]
                groups.setdefault(chosen.child.id, []).append(i)
            for child_id, members in groups.items():
                frontier.append((self.tree.node(child_id), members))
        return [out[i] for i in range(len(sample_ids))]


# -- running a router over a sample set ---------------------------------------------------------


def routable(samples: Sequence[Sample], done: Mapping[int, Route], digest: str) -> list[Sample]:
    """The samples still to route: no route yet, or one made on another tree (or that failed)."""
    return [s for s in samples if (r := done.get(s.id)) is None or r.tree_digest != digest or r.status == "error"]


async def route_with_llm(
    store: RouteStore,
    llm: LLM,
    *,
    sample_set: str,
    sample_ids: Sequence[int] | None = None,
    seed: int = 0,
    concurrency: int = 8,
    batch: int = 64,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> list[Route]:
    """Route the set's samples (or only ``sample_ids``) with the LLM router; routes are stored in
    batches as they finish, so Ctrl-C keeps every finished route and a rerun continues."""
    tree = store.tree()
    router = LLMRouter(llm, tree, seed=seed)
    wanted = set(sample_ids) if sample_ids is not None else None
    samples = [s for s in store.samples(sample_set=sample_set) if wanted is None or s.id in wanted]
    todo = routable(samples, store.routes(router.name, sample_set=sample_set), router.digest)
    gate = asyncio.Semaphore(useful_concurrency(llm, concurrency))
    done: list[Route] = []
    pending: list[Route] = []

    async def one(sample: Sample) -> Route:
        if cancel is not None and cancel.is_set():
            raise Cancelled("routing stopped; finished routes are saved")
        async with gate:
            return await router.route(sample.id, sample.instruction)

    try:
        async with in_completion_order(one(s) for s in todo) as finished:
            for next_done in finished:
                pending.append(await next_done)
                if len(pending) >= batch:
                    store.put_routes(pending)
                    done, pending = done + pending, []
                if progress:
                    progress(len(done) + len(pending), len(todo), "routing with the LLM")
                if cancel is not None and cancel.is_set():
                    raise Cancelled("routing stopped; finished routes are saved")
    finally:
        if pending:
            store.put_routes(pending)
            done += pending
    return done


def route_with_embeddings(
    store: RouteStore,
    embed: Callable[[list[str]], np.ndarray],
    features: Callable[[list[Sample]], np.ndarray],
    *,
    sample_set: str,
    min_similarity: float = MIN_SIMILARITY,
) -> list[Route]:
    """Route every sample of the set with the embedding router (``features`` gives the samples'
    unit-norm embeddings, e.g. stored ones; ``embed`` embeds the value descriptions)."""
    tree = store.tree()
    router = EmbeddingRouter(embed, tree, min_similarity=min_similarity)
    samples = store.samples(sample_set=sample_set)
    todo = routable(samples, store.routes(router.name, sample_set=sample_set), router.digest)
    if not todo:
        return []
    X = np.asarray(features(todo), dtype=np.float32)
    routes = router.route_all([s.id for s in todo], X)
    store.put_routes(routes)
    return routes


def current_routes(store: RouteStore, router: str, *, sample_set: str) -> dict[int, Route]:
    """The router's routes made on the current tree."""
    digest = route_digest(store.tree(), router)
    return {i: r for i, r in store.routes(router, sample_set=sample_set).items() if r.tree_digest == digest}


def assign(store: RouteStore, router: str, *, sample_set: str) -> dict[str, Any]:
    """Place the set's samples where ``router`` sent them: a leaf, or :data:`UNROUTED` (with the
    partial path) for "none fits" and errors. Returns :func:`summary` of the routes used."""
    routes = current_routes(store, router, sample_set=sample_set)
    store.assign_leaves({i: (r.leaf_id or UNROUTED, r.path) for i, r in routes.items()})
    return summary(store.tree(), routes.values(), total=len(store.samples(sample_set=sample_set)))


# -- reports --------------------------------------------------------------------------------------


def summary(tree: T.Tree, routes: Iterable[Route], *, total: int) -> dict[str, Any]:
    """Counts a person checks after routing: per status, per leaf, where "none fits" stopped, and the
    leaves that hold suspiciously much of the set (:func:`crowded_leaves`)."""
    routes = list(routes)
    status = Counter(r.status for r in routes)
    per_leaf = Counter(r.leaf_id for r in routes if r.status == "leaf")
    stopped = Counter(r.stopped_at for r in routes if r.status == "none")
    counts = {leaf.id: per_leaf.get(leaf.id, 0) for leaf in tree.leaves()}
    return {
        "total": total,
        "routed": len(routes),
        "not_routed": total - len(routes),
        "leaf": status.get("leaf", 0),
        "none_fits": status.get("none", 0),
        "errors": status.get("error", 0),
        "per_leaf": counts,
        "none_fits_at": [
            {"node_id": node_id, "path": path_label(tree, node_id) if node_id in tree.nodes else node_id, "count": n}
            for node_id, n in stopped.most_common()
        ],
        "crowded": [
            {"leaf_id": leaf, "path": path_label(tree, leaf), "count": n} for leaf, n in crowded_leaves(counts)
        ],
    }


#: A leaf holding more than this share of the samples placed in leaves looks like a router's bias.
CROWDED_SHARE = 0.25


def crowded_leaves(per_leaf: Mapping[str, int], *, share: float = CROWDED_SHARE) -> list[tuple[str, int]]:
    """The leaves that hold more than ``share`` of the samples placed in leaves, fullest first —
    only where the tree has enough leaves for that to be unusual (more than ``1 / share``). On
    HumanEval, 128 of 164 problems in "translate into Python" is a router's mistake, not the data."""
    placed = sum(per_leaf.values())
    if not placed or len(per_leaf) <= 1 / share:
        return []
    return sorted(((leaf, n) for leaf, n in per_leaf.items() if n > share * placed), key=lambda row: -row[1])


def short_path(tree: T.Tree, node_id: str, max_chars: int = 48) -> str:
    """The node's values from the root, ``a › b › c``, cut at the front (``…``) to ``max_chars`` so
    the leaf's own value stays readable."""
    text = " \u203a ".join(s.value for s in tree.path(node_id)) or "root"
    return text if len(text) <= max_chars else "\u2026" + text[-(max_chars - 1) :]


def path_label(tree: T.Tree, node_id: str) -> str:
    """``criterion=value / ...`` from the root to the node (``root`` for the root)."""
    return " / ".join(f"{s.criterion}={s.value}" for s in tree.path(node_id)) or "root"


def agreement(a: Mapping[int, Route], b: Mapping[int, Route]) -> dict[str, Any]:
    """How often two routers put the same sample in the same place (same leaf, or both "none fits"
    at the same node), over the samples both routed; also agreement at the first level, and what
    the second router (``b``) did with those samples (``other_status``: leaf / none / error counts)."""
    both = sorted(set(a) & set(b))
    same = sum(1 for i in both if (a[i].status, a[i].stopped_at) == (b[i].status, b[i].stopped_at))
    first = sum(1 for i in both if a[i].path[:1] == b[i].path[:1])
    n = len(both)
    return {
        "n": n,
        "same_leaf": same,
        "rate": same / n if n else None,
        "first_level_rate": first / n if n else None,
        "other_status": dict(Counter(b[i].status for i in both)),
    }


def pick(ids: Sequence[int], n: int, seed: int) -> list[int]:
    """A seeded subset of ``n`` ids (all of them when there are fewer), in the original order."""
    if n >= len(ids):
        return list(ids)
    chosen = set(random.Random(seed).sample(list(ids), n))
    return [i for i in ids if i in chosen]


def require_router(name: str) -> str:
    if name not in ROUTERS:
        raise TreeSynthError(f"unknown router {name!r}: choose {' or '.join(ROUTERS)}")
    return name


# -- a tree for data that has none ----------------------------------------------------------------


class DataPivots:
    """Pivots drawn from a dataset while a tree grows (``GrowOptions.pivots_from``).

    A node's subspace holds the dataset samples that a level-by-level walk (each value described by
    :func:`path_description`) sends through it on the tree grown so far; its pivots are a seeded draw
    of ``n`` of them (cut to ``max_chars``), so the criteria are found in the data itself rather than
    in generated samples.
    """

    def __init__(
        self,
        texts: Sequence[str],
        X: np.ndarray,
        embed: Callable[[list[str]], np.ndarray],
        *,
        seed: int = 0,
        max_chars: int = 400,
    ) -> None:
        if len(texts) != X.shape[0]:
            raise TreeSynthError("DataPivots needs one embedding row per text")
        self.texts, self.X, self.embed, self.seed, self.max_chars = list(texts), X, embed, seed, max_chars
        self._vectors: dict[str, np.ndarray] = {}

    def _embed(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, np.asarray(self.embed(missing), dtype=np.float32), strict=True))
        return np.stack([self._vectors[t] for t in texts])

    def members(self, tree: T.Tree, node: T.Node) -> list[int]:
        """Row indices of the dataset samples that fall in ``node``'s subspace."""
        if node.parent_id is None:
            return list(range(len(self.texts)))
        parent = tree.node(node.parent_id)
        rows = self.members(tree, parent)
        options = choices(tree, parent)
        if not rows or not options:
            return []
        V = self._embed([path_description(tree, c) for c in options])
        best = (self.X[rows] @ V.T).argmax(axis=1)
        return [i for i, b in zip(rows, best, strict=True) if options[int(b)].child.id == node.id]

    def __call__(self, tree: T.Tree, node: T.Node, n: int) -> list[str]:
        rows = self.members(tree, node)
        rng = random.Random(stable_seed(self.seed, "data-pivots", node.id))
        picked = sorted(rng.sample(rows, min(n, len(rows))))
        return [self.texts[i][: self.max_chars] for i in picked]
