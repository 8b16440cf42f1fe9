"""The project as ``batch prepare``'s dry run sees it: reads go to the project, writes stay in memory.

The dry run (:mod:`.prepare`) runs the real synthesis or routing against a :class:`DryRunStore`:
every read is the project's own (only what the run reads: the tree, the samples of the leaves it
fills, cache and batch-reply lookups by key), and every write (the samples and skip marks the
replies of collected batches bring, routes, cached replies) goes into this object and is gone with
it. So the project is never changed, and never copied: preparing costs what the run reads, however
many samples the project holds. Reads see the dry run's own writes, as they would in the project
(the samples a call added are listed for the next wave's prompt), so the requests written down are
those the online run sends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import fields, replace
from typing import Any

from ..errors import ProjectError
from ..llm.base import ChatResult
from ..llm.recording import CallRecord
from ..store.samples import TREE_SET, NewSample, Route, Sample, SamplesAdded
from ..tree.model import Tree

#: (sample set, leaf id): how the dry run's own samples and keys are kept.
_Leaf = tuple[str, str]


class DryRunStore:
    """Reads from ``project``, keeps writes in memory (see the module docstring). It holds the
    samples the dry run made (the texts the collected replies bring, not the project's), the keys
    its calls marked spent, the replies it cached and evicted, and its routes; the call log is not
    written (a deferred call is no call): :attr:`calls` counts what would have been logged."""

    def __init__(self, project: Any) -> None:
        self.project = project
        self.calls = 0
        self.routes_made: list[Route] = []
        self._added: list[Sample] = []
        self._by_leaf: dict[_Leaf, list[Sample]] = {}
        self._marked: dict[_Leaf, set[str]] = {}  # keys added or marked spent here
        self._stored: dict[_Leaf, set[str]] = {}  # keys of the project's samples, as last read
        self._cache: dict[str, ChatResult] = {}
        self._evicted: set[str] = set()

    # -- the tree and samples ---------------------------------------------------------------------
    def tree(self) -> Tree:
        return self.project.tree()  # type: ignore[no-any-return]

    def samples(
        self, *, sample_set: str = TREE_SET, leaf_id: str | None = None, leaf_ids: Iterable[str] | None = None
    ) -> list[Sample]:
        """The project's samples, then those the dry run added, oldest first."""
        if leaf_ids is not None:
            wanted = list(dict.fromkeys(leaf_ids))
            stored = self.project.samples(sample_set=sample_set, leaf_ids=wanted)
            mine = [s for s in self._added if s.sample_set == sample_set and s.leaf_id in set(wanted)]
            return [*stored, *mine]
        stored = self.project.samples(sample_set=sample_set, leaf_id=leaf_id)
        if leaf_id is None:
            return [*stored, *(s for s in self._added if s.sample_set == sample_set)]
        self._stored[(sample_set, leaf_id)] = {s.key for s in stored}
        return [*stored, *self._by_leaf.get((sample_set, leaf_id), [])]

    def sample_counts(self, *, sample_set: str = TREE_SET) -> dict[str, int]:
        counts = Counter(self.project.sample_counts(sample_set=sample_set))
        for (set_name, leaf_id), rows in self._by_leaf.items():
            if set_name == sample_set:
                counts[leaf_id] += len(rows)
        return dict(counts)

    def sample_keys(self, leaf_id: str, *, sample_set: str = TREE_SET) -> set[str]:
        keys: set[str] = self.project.sample_keys(leaf_id, sample_set=sample_set)
        return keys | self._marked.get((sample_set, leaf_id), set())

    def add_samples(self, samples: Iterable[NewSample]) -> SamplesAdded:
        """As the project adds them: a (set, leaf, key) already stored is skipped, and a sample of
        the tree set whose leaf is gone or pruned is dropped (counted in ``dropped``)."""
        pending = list(samples)
        if not pending:
            return SamplesAdded(0)
        live: set[str] | None = None
        added = dropped = 0
        for sample in pending:
            if sample.sample_set == TREE_SET:
                if live is None:
                    tree = self.tree()
                    live = {node_id for node_id in tree.nodes if tree.is_active(node_id)}
                if sample.leaf_id not in live:
                    dropped += 1
                    continue
            where = (sample.sample_set, sample.leaf_id)
            mine = self._marked.setdefault(where, set())
            if sample.key in mine or sample.key in self._stored_keys(where):
                continue
            row = Sample(**{f.name: getattr(sample, f.name) for f in fields(NewSample)}, id=-1 - len(self._added))
            self._added.append(row)
            self._by_leaf.setdefault(where, []).append(row)
            mine.add(sample.key)
            added += 1
        return SamplesAdded(added, dropped)

    def _stored_keys(self, where: _Leaf) -> set[str]:
        if where not in self._stored:
            sample_set, leaf_id = where
            self.samples(sample_set=sample_set, leaf_id=leaf_id)
        return self._stored[where]

    def skip_keys(self, leaf_id: str, keys: Iterable[str], *, sample_set: str = TREE_SET) -> None:
        self._marked.setdefault((sample_set, leaf_id), set()).update(keys)

    # -- routes -----------------------------------------------------------------------------------
    def routes(self, router: str, *, sample_set: str) -> dict[int, Route]:
        return self.project.routes(router, sample_set=sample_set)  # type: ignore[no-any-return]

    def put_routes(self, routes: Iterable[Route]) -> None:
        self.routes_made.extend(routes)

    def assign_leaves(self, assignments: Mapping[int, tuple[str, list[dict[str, str]]]]) -> None:
        raise ProjectError("a batch dry run does not place samples")

    # -- the reply cache, the call log and collected batch replies --------------------------------
    def cache_get(self, key: str) -> ChatResult | None:
        if key in self._cache:
            return self._cache[key]
        return None if key in self._evicted else self.project.cache_get(key)  # type: ignore[no-any-return]

    def cache_put(self, key: str, result: ChatResult) -> None:
        self._cache[key] = replace(result, cached=True)
        self._evicted.discard(key)

    def cache_evict(self, key: str) -> None:
        self._cache.pop(key, None)
        self._evicted.add(key)

    def log_call(self, record: CallRecord) -> str:
        self.calls += 1
        return f"dry-{self.calls}"

    def batch_reply(self, key: str) -> dict[str, Any] | None:
        return self.project.batch_reply(key)  # type: ignore[no-any-return]
