"""The project database schema: an ordered list of named migrations, and how values map to rows.

Each migration is a function that takes the connection and runs plain SQL. :func:`migrate` applies
the ones a database lacks, each in its own ``BEGIN IMMEDIATE`` transaction together with its row in
``_migrations``, so a crash leaves every migration either fully applied or not at all, and two
processes opening the same project at once apply each migration exactly once. Never edit or reorder
a migration that has shipped: add a new one at the end.

The connection must be in autocommit mode (``isolation_level=None``): the store manages its own
transactions.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import ProjectError
from ..tree.changes import node_from_dict, node_to_dict
from ..tree.model import Node
from .samples import NewSample, Sample

Migration = Callable[[sqlite3.Connection], None]

#: Every migration, in the order it runs: (name, function).
MIGRATIONS: list[tuple[str, Migration]] = []

#: Tables a usable project database must hold.
TABLES = ("meta", "nodes", "edits", "samples", "llm_calls", "llm_cache", "runs")


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration, under its function name."""
    if any(name == fn.__name__ for name, _ in MIGRATIONS):
        raise ValueError(f"duplicate migration name {fn.__name__!r}")
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_meta(conn: sqlite3.Connection) -> None:
    # Keys: task, style, root_id, settings (JSON), created, format_version.
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@migration
def m002_nodes(conn: sqlite3.Connection) -> None:
    # One row per tree.Node; pivots and pool are JSON lists, provenance a JSON object.
    conn.execute(
        """CREATE TABLE nodes (
            id TEXT PRIMARY KEY,
            parent_id TEXT,
            depth INTEGER NOT NULL,
            criterion TEXT,
            value TEXT,
            split_criterion TEXT,
            pivots TEXT NOT NULL DEFAULT '[]',
            approved INTEGER NOT NULL DEFAULT 0,
            pruned INTEGER NOT NULL DEFAULT 0,
            locked INTEGER NOT NULL DEFAULT 0,
            provenance TEXT NOT NULL DEFAULT '{}',
            pool TEXT NOT NULL DEFAULT '[]',
            rank INTEGER NOT NULL DEFAULT 0,
            expanded INTEGER NOT NULL DEFAULT 0,
            note TEXT NOT NULL DEFAULT ''
        )"""
    )
    conn.execute("CREATE INDEX nodes_parent ON nodes (parent_id)")


@migration
def m003_edits(conn: sqlite3.Connection) -> None:
    # changes: JSON list of {node_id, before, after} (tree.node_to_dict or null).
    # meta: JSON {field: [before, after]} for task/style/root_id, or null.
    # The undo stack is the edits with undone = 0; the redo stack the edits with undone = 1 and
    # redoable = 1 (a new edit sets redoable = 0 on every undone edit).
    conn.execute(
        """CREATE TABLE edits (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts TEXT NOT NULL,
            kind TEXT NOT NULL,
            args TEXT NOT NULL DEFAULT '{}',
            actor TEXT NOT NULL DEFAULT 'human',
            changes TEXT NOT NULL,
            meta TEXT,
            n_changes INTEGER NOT NULL DEFAULT 0,
            undone INTEGER NOT NULL DEFAULT 0,
            redoable INTEGER NOT NULL DEFAULT 1
        )"""
    )
    conn.execute("CREATE INDEX edits_undone ON edits (undone, redoable, id)")


@migration
def m004_samples(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE samples (
            id INTEGER PRIMARY KEY,
            sample_set TEXT NOT NULL,
            leaf_id TEXT NOT NULL,
            key TEXT NOT NULL,
            instruction TEXT NOT NULL,
            response TEXT,
            path TEXT NOT NULL DEFAULT '[]',
            model TEXT,
            call_id TEXT,
            response_call_id TEXT,
            extra TEXT NOT NULL DEFAULT '{}',
            created TEXT NOT NULL,
            UNIQUE (sample_set, leaf_id, key)
        )"""
    )


@migration
def m005_llm_calls(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE llm_calls (
            id TEXT PRIMARY KEY,
            ts TEXT NOT NULL,
            run_id TEXT,
            backend TEXT NOT NULL,
            model TEXT NOT NULL,
            purpose TEXT NOT NULL DEFAULT '',
            node_id TEXT,
            cache_key TEXT,
            request TEXT NOT NULL,
            response TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            latency_s REAL NOT NULL DEFAULT 0,
            error TEXT,
            cached INTEGER NOT NULL DEFAULT 0
        )"""
    )
    conn.execute("CREATE INDEX llm_calls_run ON llm_calls (run_id)")
    conn.execute("CREATE INDEX llm_calls_node ON llm_calls (node_id)")


@migration
def m006_llm_cache(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE llm_cache (key TEXT PRIMARY KEY, result TEXT NOT NULL, created TEXT NOT NULL)")


@migration
def m007_runs(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            command TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            started TEXT NOT NULL,
            finished TEXT,
            status TEXT NOT NULL DEFAULT 'running',
            error TEXT
        )"""
    )


@migration
def m008_deleted_samples(conn: sqlite3.Connection) -> None:
    """Keys of samples a person deleted, so a rerun of synthesis does not bring them back."""
    conn.execute(
        """CREATE TABLE deleted_samples (
            sample_set TEXT NOT NULL,
            leaf_id TEXT NOT NULL,
            key TEXT NOT NULL,
            PRIMARY KEY (sample_set, leaf_id, key)
        )"""
    )


@migration
def m009_jobs(conn: sqlite3.Connection) -> None:
    """Background jobs (grow, synth) the app starts and polls; ``heartbeat`` tells live from dead."""
    conn.execute(
        """CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL,
            done INTEGER NOT NULL DEFAULT 0,
            total INTEGER,
            message TEXT NOT NULL DEFAULT '',
            error TEXT,
            started TEXT NOT NULL,
            heartbeat REAL NOT NULL,
            finished TEXT,
            run_id TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0
        )"""
    )
    conn.execute("CREATE INDEX jobs_started ON jobs (started)")


@migration
def m010_features(conn: sqlite3.Connection) -> None:
    """Per-sample feature vectors (embeddings, projected gradients) and cached derived arrays (maps).

    ``kind`` names what made a vector (model, dimension, seed), so features from different
    models never mix; ``vector`` holds float32 bytes.
    """
    conn.execute(
        """CREATE TABLE features (
            kind TEXT NOT NULL,
            sample_id INTEGER NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (kind, sample_id)
        )"""
    )
    conn.execute("CREATE TABLE blobs (key TEXT PRIMARY KEY, created TEXT NOT NULL, data BLOB NOT NULL)")
    conn.execute("CREATE INDEX runs_started ON runs (started)")


@migration
def m011_routes(conn: sqlite3.Connection) -> None:
    """Where each router sent each sample: a leaf, or "none fits" with the node it stopped at.

    One row per (sample, router), so the LLM and embedding routers can be compared; ``tree_digest``
    names the tree the route was made on, so a route made before the tree changed is redone.
    """
    conn.execute(
        """CREATE TABLE routes (
            sample_id INTEGER NOT NULL,
            router TEXT NOT NULL,
            tree_digest TEXT NOT NULL,
            status TEXT NOT NULL,
            leaf_id TEXT,
            stopped_at TEXT NOT NULL,
            path TEXT NOT NULL DEFAULT '[]',
            detail TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            PRIMARY KEY (sample_id, router)
        )"""
    )


@migration
def m012_node_flag(conn: sqlite3.Connection) -> None:
    """A node's review flag (why a person should look at it, e.g. a value that may combine two);
    nodes of older projects get none."""
    conn.execute("ALTER TABLE nodes ADD COLUMN flag TEXT NOT NULL DEFAULT ''")


@migration
def m013_run_lease(conn: sqlite3.Connection) -> None:
    """Who holds a job: every run that writes samples or the tree (from the app or the CLI) is a job,
    and the one running job is the project's run lease; ``pid`` and ``host`` name its process, so a
    lease whose process died on this host is taken over at once."""
    conn.execute("ALTER TABLE jobs ADD COLUMN pid INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE jobs ADD COLUMN host TEXT NOT NULL DEFAULT ''")
    conn.execute("CREATE INDEX jobs_status ON jobs (status)")


@migration
def m015_edit_owners(conn: sqlite3.Connection) -> None:
    """Whose each edit is (``owner``: an app session, ``cli:<user>`` or ``$TREESYNTH_OWNER``; edits
    from before owners are ``legacy``), so undo and redo act on one owner's edits; and which nodes
    each edit touched (``edit_touches``; ``meta:<key>`` for task, style and root_id), so an undo can
    find the later edits that changed the same nodes."""
    conn.execute("ALTER TABLE edits ADD COLUMN owner TEXT NOT NULL DEFAULT 'legacy'")
    conn.execute("CREATE INDEX edits_owner ON edits (owner, undone, id)")
    conn.execute("CREATE TABLE edit_touches (edit_id INTEGER NOT NULL, node_id TEXT NOT NULL)")
    conn.execute("CREATE INDEX edit_touches_node ON edit_touches (node_id, edit_id)")
    conn.execute(
        "INSERT INTO edit_touches (edit_id, node_id) "
        "SELECT e.id, json_extract(c.value, '$.node_id') FROM edits e, json_each(e.changes) c"
    )
    conn.execute(
        "INSERT INTO edit_touches (edit_id, node_id) "
        "SELECT e.id, 'meta:' || m.key FROM edits e, json_each(e.meta) m WHERE e.meta IS NOT NULL"
    )


@migration
def m016_call_attempts(conn: sqlite3.Connection) -> None:
    """Each logged call's HTTP attempts: ``attempts`` is how many requests reached the server,
    ``attempt_errors`` (a JSON list) why each failed try failed. Older rows made one try (a cache
    hit none); a failed one's reason is its error."""
    conn.execute("ALTER TABLE llm_calls ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1")
    conn.execute("ALTER TABLE llm_calls ADD COLUMN attempt_errors TEXT NOT NULL DEFAULT '[]'")
    conn.execute("UPDATE llm_calls SET attempts = 0 WHERE cached = 1")
    conn.execute("UPDATE llm_calls SET attempt_errors = json_array(error) WHERE error IS NOT NULL")


@migration
def m017_contamination(conn: sqlite3.Connection) -> None:
    """Decontamination: each check of a sample set against an eval set (what, when, the counts), and
    each sample found contaminated with the eval item and the n-gram it shares. A rerun against the
    same eval set replaces both."""
    conn.execute(
        """CREATE TABLE contamination_checks (
            sample_set TEXT NOT NULL,
            source TEXT NOT NULL,
            n INTEGER NOT NULL,
            items INTEGER NOT NULL,
            skipped_items INTEGER NOT NULL,
            checked INTEGER NOT NULL,
            flagged INTEGER NOT NULL,
            dropped INTEGER NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (sample_set, source)
        )"""
    )
    conn.execute(
        """CREATE TABLE contamination (
            sample_id INTEGER NOT NULL,
            source TEXT NOT NULL,
            item TEXT NOT NULL,
            ngram TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (sample_id, source)
        )"""
    )


@migration
def m020_trashed_samples(conn: sqlite3.Connection) -> None:
    """Samples a person deleted, kept by deletion (``batch``) so the delete can be undone (see
    :mod:`.trash`); only the latest few deletions are kept."""
    conn.execute(
        """CREATE TABLE trashed_samples (
            batch INTEGER NOT NULL,
            id INTEGER NOT NULL,
            sample_set TEXT NOT NULL,
            leaf_id TEXT NOT NULL,
            key TEXT NOT NULL,
            instruction TEXT NOT NULL,
            response TEXT,
            path TEXT NOT NULL DEFAULT '[]',
            model TEXT,
            call_id TEXT,
            response_call_id TEXT,
            extra TEXT NOT NULL DEFAULT '{}',
            created TEXT NOT NULL,
            deleted TEXT NOT NULL,
            PRIMARY KEY (batch, id)
        )"""
    )


@migration
def m021_batches(conn: sqlite3.Connection) -> None:
    """Batch generation (:mod:`treesynth_core.batch`): each prepared shard file with where it was
    sent and how it stands (``batches``), and each reply a batch brought back, by the cache key of
    its request (``batch_replies``; the request's ``custom_id``)."""
    conn.execute(
        """CREATE TABLE batches (
            id TEXT PRIMARY KEY,
            round TEXT NOT NULL,
            shard TEXT NOT NULL,
            requests INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'prepared',
            base_url TEXT,
            input_file_id TEXT,
            remote_id TEXT,
            output_file_id TEXT,
            error_file_id TEXT,
            counts TEXT NOT NULL DEFAULT '{}',
            created TEXT NOT NULL,
            updated TEXT NOT NULL
        )"""
    )
    conn.execute(
        """CREATE TABLE batch_replies (
            key TEXT PRIMARY KEY,
            batch_id TEXT,
            body TEXT NOT NULL,
            collected TEXT NOT NULL
        )"""
    )


@migration
def m022_job_outcome(conn: sqlite3.Connection) -> None:
    """A job's outcome apart from its progress line (``result``: the summary of a finished run, or what a
    stopped one kept; older jobs have none), and who started it where: ``starter``, the token of the
    app's browser tab, and ``origin``, the app page; both empty for commands."""
    conn.execute("ALTER TABLE jobs ADD COLUMN result TEXT")
    conn.execute("ALTER TABLE jobs ADD COLUMN starter TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE jobs ADD COLUMN origin TEXT NOT NULL DEFAULT ''")


@migration
def m023_batch_rounds(conn: sqlite3.Connection) -> None:
    """What each prepared batch round is for (``kind``: ``synth`` or ``route``) and the options it was
    prepared with (``params``, JSON), so ``batch collect`` can turn its replies into samples with the
    same options."""
    conn.execute(
        """CREATE TABLE batch_rounds (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            created TEXT NOT NULL
        )"""
    )


@migration
def m024_failed_call_keys(conn: sqlite3.Connection) -> None:
    """The cache keys of failed calls (a partial index: failures are few), so ``batch collect`` finds
    a failure it logged before in one lookup and a rerun logs it once."""
    conn.execute("CREATE INDEX llm_calls_failed_key ON llm_calls (cache_key) WHERE error IS NOT NULL")


@migration
def m025_sample_moves(conn: sqlite3.Connection) -> None:
    """A journal of the samples deleted or moved (another sample set, leaf or path), by id, so a map
    knows which of its points changed since it was written without reading every sample (see
    :func:`treesynth_core.coverage.maps.latest_map_points`). Triggers write it, whatever deletes or
    moves the rows; an import's hidden staging rows are left out. ``seq`` only grows
    (``AUTOINCREMENT``): a map keeps the last one it saw; rows no map needs any more are deleted
    when a map is written."""
    staging = "substr(OLD.sample_set, 1, 11) != '~importing:'"  # samples.STAGING_PREFIX, as it was then
    conn.execute("CREATE TABLE sample_moves (seq INTEGER PRIMARY KEY AUTOINCREMENT, sample_id INTEGER NOT NULL)")
    conn.execute(
        f"CREATE TRIGGER samples_deleted AFTER DELETE ON samples WHEN {staging} "
        "BEGIN INSERT INTO sample_moves (sample_id) VALUES (OLD.id); END"
    )
    conn.execute(
        "CREATE TRIGGER samples_moved AFTER UPDATE OF sample_set, leaf_id, path ON samples "
        "WHEN (OLD.sample_set IS NOT NEW.sample_set OR OLD.leaf_id IS NOT NEW.leaf_id OR OLD.path IS NOT NEW.path) "
        f"AND {staging} BEGIN INSERT INTO sample_moves (sample_id) VALUES (OLD.id); END"
    )


# -- applying -------------------------------------------------------------------------------------


def has_migrations_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone()
    return row is not None


def applied(conn: sqlite3.Connection) -> list[str]:
    """The names of the migrations this database has, in the order they were applied."""
    if not has_migrations_table(conn):
        return []
    return [name for (name,) in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]


def pending(conn: sqlite3.Connection) -> list[str]:
    """The names of the migrations :func:`migrate` would apply."""
    done = set(applied(conn))
    return [name for name, _ in MIGRATIONS if name not in done]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Bring the schema up to date; return the names applied now. Safe to call on every open.

    Raises :class:`ProjectError` if the database records a migration this code does not know,
    that is, it was written by a newer TreeSynth.
    """
    if not has_migrations_table(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
    known = {name for name, _ in MIGRATIONS}
    already = applied(conn)
    unknown = [name for name in already if name not in known]
    if unknown:
        raise ProjectError(
            f"this project was made by a newer TreeSynth (unknown schema step {unknown[0]!r}): "
            "upgrade TreeSynth to open it"
        )
    done: list[str] = []
    for name, fn in MIGRATIONS:
        if name not in already and _apply_one(conn, name, fn):
            done.append(name)
    return done


def _apply_one(conn: sqlite3.Connection, name: str, fn: Migration) -> bool:
    """Apply one migration with its record in one transaction; False if another process won."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
            conn.execute("ROLLBACK")
            return False
        fn(conn)
        conn.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)", (name, now()))
        conn.execute("COMMIT")
        return True
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def missing_tables(conn: sqlite3.Connection) -> list[str]:
    """The tables of :data:`TABLES` the database lacks."""
    present = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return [name for name in TABLES if name not in present]


def schema_sql(conn: sqlite3.Connection) -> str:
    """The CREATE statements of the database, for docs and debugging."""
    rows = conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
    return ";\n".join(sql for (sql,) in rows) + ";\n"


# -- rows -----------------------------------------------------------------------------------------

#: The columns of ``nodes``, in the order :func:`node_row` and :func:`row_node` use.
NODE_COLUMNS = (
    "id",
    "parent_id",
    "depth",
    "criterion",
    "value",
    "split_criterion",
    "pivots",
    "approved",
    "pruned",
    "locked",
    "provenance",
    "pool",
    "rank",
    "expanded",
    "note",
    "flag",
)
_NODE_JSON = frozenset({"pivots", "provenance", "pool"})
#: The columns of ``samples`` (``id`` aside), in the order :func:`sample_row` uses.
SAMPLE_COLUMNS = (
    "sample_set",
    "leaf_id",
    "key",
    "instruction",
    "response",
    "path",
    "model",
    "call_id",
    "response_call_id",
    "extra",
    "created",
)


#: One encoder for every row (``json.dumps`` with options builds a new one per call: a third of a bulk insert).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def dumps(value: Any) -> str:
    """Compact JSON for a TEXT column."""
    return _ENCODER.encode(value)


def now() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def node_row(node: Node) -> tuple[Any, ...]:
    data = node_to_dict(node)
    return tuple(dumps(data[c]) if c in _NODE_JSON else data[c] for c in NODE_COLUMNS)


def row_node(row: Sequence[Any]) -> Node:
    data = dict(zip(NODE_COLUMNS, row, strict=True))
    return node_from_dict({k: json.loads(v) if k in _NODE_JSON else v for k, v in data.items()})


def sample_row(sample: NewSample, created: str) -> tuple[Any, ...]:
    return (
        sample.sample_set,
        sample.leaf_id,
        sample.key,
        sample.instruction,
        sample.response,
        dumps(sample.path),
        sample.model,
        sample.call_id,
        sample.response_call_id,
        dumps(sample.extra) if sample.extra else "{}",
        created,
    )


def row_sample(row: Sequence[Any]) -> Sample:
    """A ``samples`` row selected as ``id, *SAMPLE_COLUMNS``."""
    data = dict(zip(("id", *SAMPLE_COLUMNS), row, strict=True))
    return Sample(**{**data, "path": json.loads(data["path"]), "extra": json.loads(data["extra"])})
