"""2-D maps of the samples: UMAP of their embeddings or gradient features, cached in the project.

:func:`umap_2d` is a pure function over arrays (seeded: same input and seed, same coordinates).
:func:`map_points` lays out a set of samples, caches the coordinates in the project (keyed by a hash
of the feature kind, the sample ids, the parameters and the features themselves) and returns one
:class:`MapPoint` per sample, carrying its leaf, path and criterion values. :func:`figure` draws the
points with plotly (hover shows the text and the path), :func:`png` as a static matplotlib image;
:func:`write_map` writes a self-contained HTML file (plotly.js inline, so it opens offline) or a PNG.

umap-learn, plotly and matplotlib are imported on first use: importing this module is cheap. The first UMAP
of a process spends ~10 s compiling numba code; later ones are fast.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import TreeSynthError
from ..progress import Progress
from ..store.samples import TREE_SET, Sample
from .map_density import DENSITY_ABOVE, DRAWN_POINTS, density_trace, drawn_indices
from .map_transform import MAP_MAX_FIT, PLACE_METRICS, fit_indices, place_by_neighbours

if TYPE_CHECKING:
    from ..tree.model import Tree


#: Bump when the layout changes meaning, so old cached maps stop matching.
MAP_CACHE_VERSION = "map-v1"
#: Up to this many points the neighbour graph is computed exactly with numpy (no NN-descent).
EXACT_KNN_MAX = 20_000
#: Points shown with WebGL (Scattergl) above this many.
WEBGL_ABOVE = 2_000
HOVER_CHARS = 400
BASELINE_LABEL = "flat baseline"
BASELINE_COLOR = "#9e9e9e"
#: plotly's default colours, in its order: a group has the same colour in the HTML and the PNG map.
COLORWAY = (
    "#636efa",
    "#ef553b",
    "#00cc96",
    "#ab63fa",
    "#ffa15a",
    "#19d3f3",
    "#ff6692",
    "#b6e880",
    "#ff97ff",
    "#fecb52",
)
PNG_SIZE = (10.0, 7.5)  # inches
PNG_DPI = 150
#: A PNG map lists its groups in a legend up to this many (more would cover the plot).
PNG_LEGEND_MAX = 20
MAP_FORMATS = ("html", "png")
MAP_SUFFIXES = {".html": "html", ".htm": "html", ".png": "png"}


@dataclass(frozen=True)
class MapPoint:
    """One sample on a map: where it lies and what it is."""

    sample_id: int
    x: float
    y: float
    leaf_id: str
    #: The leaf's place in the tree, e.g. "addition > fruit" (the flat baseline's is its own label).
    leaf_label: str
    #: The path written into this sample's prompt (a sampled node shows the value drawn).
    path: str
    criteria: dict[str, str] = field(default_factory=dict)
    sample_set: str = TREE_SET
    text: str = ""


# -- layout ---------------------------------------------------------------------------------------


def _unit(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def _pca_2d(X: np.ndarray) -> np.ndarray:
    """The first two principal coordinates (zeros where the rank runs out), signs fixed."""
    centered = X - X.mean(axis=0)
    u, s, _ = np.linalg.svd(centered, full_matrices=False)
    coords = np.zeros((X.shape[0], 2))
    k = min(2, s.size)
    coords[:, :k] = u[:, :k] * s[:k]
    for j in range(2):
        column = coords[:, j]
        if column.size and column[np.argmax(np.abs(column))] < 0:
            coords[:, j] = -column
    return coords


def exact_knn(X: np.ndarray, k: int, metric: str = "cosine", block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row (itself first), blockwise in numpy.

    Parameters
    ----------
    X : array of shape (n, d)
    k : int
        Neighbours per row, the row itself included (1 <= k <= n).
    metric : {"cosine", "euclidean"}

    Returns
    -------
    indices : array of shape (n, k), int64
    distances : array of shape (n, k), float32
        Cosine distance (1 - cos) or Euclidean distance, ascending; 0 for the row itself.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"exact_knn supports cosine and euclidean, not {metric!r}")
    data = np.asarray(X, dtype=np.float32)
    if metric == "cosine":
        data = _unit(data)
    n = data.shape[0]
    squares = np.einsum("ij,ij->i", data, data)
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        dots = data[rows] @ data.T
        if metric == "cosine":
            dist = 1.0 - dots
        else:
            dist = np.sqrt(np.maximum(squares[rows, None] + squares[None, :] - 2.0 * dots, 0.0))
        np.maximum(dist, 0.0, out=dist)
        dist[np.arange(rows.size), rows] = -1.0  # the row itself comes first, even among duplicates
        part = np.argpartition(dist, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (rows.size, 1))
        part_dist = np.take_along_axis(dist, part, axis=1)
        order = np.argsort(part_dist, axis=1, kind="stable")
        indices[rows] = np.take_along_axis(part, order, axis=1)
        distances[rows] = np.maximum(np.take_along_axis(part_dist, order, axis=1), 0.0)
    return indices, distances


def umap_2d(
    X: np.ndarray | Sequence[Sequence[float]],
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
    n_epochs: int | None = None,
    max_fit: int | None = MAP_MAX_FIT,
) -> np.ndarray:
    """A seeded 2-D UMAP layout of the rows of ``X``.

    Parameters
    ----------
    X : array of shape (n, d)
    seed : int
        UMAP's ``random_state``: the same seed gives the same coordinates (UMAP then runs single-threaded).
    n_neighbors : int
        Neighbourhood size; clipped to n - 1.
    min_dist : float
    metric : str
        Any UMAP metric; for cosine and euclidean with n <= ``EXACT_KNN_MAX`` the neighbour graph
        is computed exactly here (faster than NN-descent and its compilation at these sizes).
    n_epochs : int, optional
        UMAP's default when None.
    max_fit : int, optional
        Above this many rows UMAP is fitted on a seeded sample of ``max_fit`` of them (their
        coordinates are those of a plain layout of the sample) and every other row is placed by its
        nearest fitted rows (:func:`~treesynth_core.coverage.map_transform.place_by_neighbours`).
        None fits all rows, as do metrics other than cosine and euclidean.

    Returns
    -------
    array of shape (n, 2), float64
        For n < 4 (too few points for a neighbour graph) the first two principal coordinates of
        the (cosine-normalized) rows instead; zeros for one point.
    """
    data = np.asarray(X, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D array of shape (n, d), got shape {data.shape}")
    n = data.shape[0]
    if n == 0:
        return np.zeros((0, 2))
    if not np.isfinite(data).all():
        raise ValueError("features contain NaN or infinite values")
    if n < 4:
        return _pca_2d(_unit(data).astype(np.float64) if metric == "cosine" else data.astype(np.float64))
    fit = fit_indices(n, max_fit if metric in PLACE_METRICS else None, seed)
    if fit.size < n:
        coords = umap_2d(
            data[fit], seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, n_epochs=n_epochs
        )
        rest = np.setdiff1d(np.arange(n), fit, assume_unique=True)
        out = np.empty((n, 2))
        out[fit] = coords
        out[rest] = place_by_neighbours(data[fit], coords, data[rest], n_neighbors=n_neighbors, metric=metric)
        return out
    k = max(2, min(n_neighbors, n - 1))
    import umap

    knn: tuple[Any, Any, Any] = (None, None, None)
    if metric in ("cosine", "euclidean") and n <= EXACT_KNN_MAX:
        indices, distances = exact_knn(data, k, metric)
        knn = (indices, distances, None)
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=k,
        min_dist=min_dist,
        metric=metric,
        random_state=seed,
        n_epochs=n_epochs,
        precomputed_knn=knn,
        low_memory=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs overridden by the seed, precomputed kNN on small data, ...
        coords = reducer.fit_transform(data)
    return np.asarray(coords, dtype=np.float64)


# -- points ---------------------------------------------------------------------------------------


class MapStore(Protocol):
    def tree(self) -> Tree: ...

    def get_blob(self, key: str) -> bytes | None: ...

    def put_blob(self, key: str, data: bytes) -> None: ...


def map_cache_key(kind: str, sample_ids: Sequence[int], X: np.ndarray, params: dict[str, Any]) -> str:
    """Content key of a layout: feature kind, sample ids, UMAP parameters and the features' bytes."""
    digest = hashlib.blake2b(digest_size=20)
    header = {"kind": kind, "ids": [int(i) for i in sample_ids], "params": params, "shape": list(X.shape)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(X, dtype=np.float32).tobytes())
    return f"{MAP_CACHE_VERSION}:{digest.hexdigest()}"


def leaf_labels(tree: Tree) -> dict[str, str]:
    """A readable label for every node: its values from the root, e.g. "addition > fruit"."""
    labels = {}
    for node_id in tree.nodes:
        steps = [n.label for n in tree.ancestors(node_id) if not n.is_root] + [tree.node(node_id).label]
        labels[node_id] = " > ".join(s for s in steps if s and s != "root") or "root"
    return labels


def map_points(
    store: MapStore,
    samples: Sequence[Sample],
    X: np.ndarray,
    kind: str,
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
    max_fit: int | None = MAP_MAX_FIT,
    progress: Progress | None = None,
) -> list[MapPoint]:
    """Lay out ``samples`` (features ``X``, one row each, of feature kind ``kind``) with :func:`umap_2d`
    (fitted on a sample of ``max_fit`` when there are more); the coordinates are cached in the store, so
    the same map is computed once."""
    features = np.asarray(X, dtype=np.float32)
    if features.shape[0] != len(samples):
        raise ValueError(f"{features.shape[0]} feature rows for {len(samples)} samples")
    params: dict[str, Any] = {"seed": seed, "n_neighbors": n_neighbors, "min_dist": min_dist, "metric": metric}
    if max_fit is not None and len(samples) > max_fit and metric in PLACE_METRICS:
        params["max_fit"] = max_fit  # below it the key (and the layout) is what it always was
    key = map_cache_key(kind, [s.id for s in samples], features, params)
    cached = store.get_blob(key)
    if cached is not None and len(cached) == 16 * len(samples):
        coords = np.frombuffer(cached, dtype=np.float64).reshape(-1, 2)
    else:
        if progress:
            progress(0, 1, f"UMAP of {len(samples)} points")
        coords = umap_2d(
            features, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, max_fit=max_fit
        )
        store.put_blob(key, np.ascontiguousarray(coords, dtype=np.float64).tobytes())
        latest = {"key": key, "ids": [int(s.id) for s in samples]}
        store.put_blob(_latest_key(kind, seed), json.dumps(latest).encode())
    if progress:
        progress(1, 1, "map ready")
    return _points(store, samples, coords)


def _latest_key(kind: str, seed: int) -> str:
    return f"{MAP_CACHE_VERSION}:latest:{kind}:{seed}"


def latest_map_points(store: MapStore, samples: Sequence[Sample], kind: str, *, seed: int = 0) -> list[MapPoint] | None:
    """The last map laid out for ``kind``, on those of ``samples`` it holds (samples added since are
    left off, deleted ones are gone); ``None`` when no map of ``kind`` was laid out yet."""
    blob = store.get_blob(_latest_key(kind, seed))
    if blob is None:
        return None
    latest = json.loads(blob)
    coords_blob = store.get_blob(latest["key"])
    if coords_blob is None or len(coords_blob) != 16 * len(latest["ids"]):
        return None
    coords = np.frombuffer(coords_blob, dtype=np.float64).reshape(-1, 2)
    where = {int(sample_id): row for row, sample_id in enumerate(latest["ids"])}
    kept = [s for s in samples if s.id in where]
    return _points(store, kept, coords[[where[s.id] for s in kept]])


def _points(store: MapStore, samples: Sequence[Sample], coords: np.ndarray) -> list[MapPoint]:
    labels = leaf_labels(store.tree())
    points = []
    for sample, (x, y) in zip(samples, coords, strict=True):
        steps = [(str(p.get("criterion", "")), str(p.get("value", ""))) for p in sample.path]
        flat = sample.sample_set != TREE_SET and not steps
        points.append(
            MapPoint(
                sample_id=sample.id,
                x=float(x),
                y=float(y),
                leaf_id=sample.leaf_id,
                leaf_label=BASELINE_LABEL if flat else labels.get(sample.leaf_id, sample.leaf_id),
                path=" > ".join(v for _, v in steps),
                criteria=dict(steps),
                sample_set=sample.sample_set,
                text=sample.instruction,
            )
        )
    return points


# -- drawing --------------------------------------------------------------------------------------


def hover_text(point: MapPoint) -> str:
    """The hover label: path, text (wrapped, shortened) and provenance; ``<``, ``>`` and ``&`` escaped,
    because plotly reads tags (``<b>``, ``<br>``) in hover text."""
    body = point.text if len(point.text) <= HOVER_CHARS else point.text[: HOVER_CHARS - 1] + "…"
    lines = textwrap.wrap(body, 80) or [""]
    where = point.path or point.leaf_label
    return (
        f"<b>{html.escape(where, quote=False)}</b><br>"
        + "<br>".join(html.escape(line, quote=False) for line in lines)
        + f"<br><i>{html.escape(point.sample_set, quote=False)} · sample {point.sample_id}</i>"
    )


def color_options(points: Sequence[MapPoint]) -> list[str]:
    """What :func:`figure` can colour by: leaf, subtree, sample_set and each criterion present."""
    criteria = dict.fromkeys(c for p in points for c in p.criteria)
    return ["leaf", "subtree", "sample_set", *criteria]


def _group(point: MapPoint, color_by: str) -> str:
    if color_by == "sample_set":
        return point.sample_set
    if point.sample_set != TREE_SET and not point.criteria:
        return BASELINE_LABEL if point.leaf_label == BASELINE_LABEL else point.sample_set
    if color_by == "leaf":
        return point.leaf_label
    if color_by == "subtree":
        return point.leaf_label.split(" > ", 1)[0]
    return point.criteria.get(color_by, f"(no {color_by})")


def groups(points: Sequence[MapPoint], color_by: str = "leaf") -> dict[str, list[MapPoint]]:
    """The points by colour group, in order of first appearance (one legend entry each).

    Raises a :class:`~treesynth_core.errors.TreeSynthError` when ``color_by`` is not one of
    :func:`color_options`.
    """
    options = color_options(points)
    if points and color_by not in options:
        raise TreeSynthError(f"cannot colour the map by {color_by!r}: choose one of {', '.join(options)}")
    out: dict[str, list[MapPoint]] = {}
    for point in points:
        out.setdefault(_group(point, color_by), []).append(point)
    return out


def figure(points: Sequence[MapPoint], *, color_by: str = "leaf", title: str = "") -> Any:
    """A plotly scatter of the points, one trace (legend entry) per group.

    Parameters
    ----------
    points : sequence of MapPoint
    color_by : str
        ``leaf``, ``subtree`` (the first split's value), ``sample_set`` or a criterion name.
        Flat-baseline points form their own grey group unless colouring by sample_set.
    title : str

    Above :data:`~treesynth_core.coverage.map_density.DENSITY_ABOVE` points, a density image of all
    of them lies under a seeded sample of them (the only ones hover and selection see).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    if len(points) > DENSITY_ABOVE:  # every point as a density image, a seeded sample as points
        xs = np.fromiter((p.x for p in points), float, len(points))
        ys = np.fromiter((p.y for p in points), float, len(points))
        groups(points, color_by)  # a colour choice is checked against every point, not the sample
        fig.add_trace(density_trace(xs, ys, name=f"all {len(points):,} points"))
        points = [points[i] for i in drawn_indices(len(points), above=DENSITY_ABOVE, limit=DRAWN_POINTS)]
    grouped = groups(points, color_by)
    scatter = go.Scattergl if len(points) > WEBGL_ABOVE else go.Scatter
    for name, members in grouped.items():
        flat = name == BASELINE_LABEL
        fig.add_trace(
            scatter(
                x=[p.x for p in members],
                y=[p.y for p in members],
                mode="markers",
                name=html.escape(name[:60], quote=False),
                text=[hover_text(p) for p in members],
                hovertemplate="%{text}<extra></extra>",
                customdata=[[p.sample_id, p.leaf_id] for p in members],
                marker={"size": 6, "opacity": 0.8, **({"color": BASELINE_COLOR, "symbol": "x"} if flat else {})},
            )
        )
    fig.update_layout(
        title=title,
        template="plotly_white",
        legend={"title": {"text": color_by}, "itemsizing": "constant"},
        xaxis={"visible": False},
        yaxis={"visible": False},
        hoverlabel={"align": "left"},
        margin={"l": 10, "r": 10, "t": 50 if title else 10, "b": 10},
    )
    return fig


def _plain(text: str, limit: int) -> str:
    """Text for matplotlib as written: ``$`` would start mathtext, a leading ``_`` hides a legend entry."""
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "\u2026"
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def png(points: Sequence[MapPoint], *, color_by: str = "leaf", title: str = "") -> bytes:
    """A static PNG of the map (matplotlib, Agg; no browser): the groups of :func:`figure` in the
    same colours, the flat baseline as grey crosses, a legend up to :data:`PNG_LEGEND_MAX` groups.

    Returns
    -------
    bytes
        A PNG of about ``PNG_SIZE`` inches at ``PNG_DPI`` (wider with the legend beside it).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grouped = groups(points, color_by)
    fig = Figure(figsize=PNG_SIZE, dpi=PNG_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    size = 14 if len(points) <= WEBGL_ABOVE else 5
    for index, (name, members) in enumerate(grouped.items()):
        flat = name == BASELINE_LABEL
        ax.scatter(
            [p.x for p in members],
            [p.y for p in members],
            s=size * (1.6 if flat else 1.0),
            marker="x" if flat else "o",
            c=BASELINE_COLOR if flat else COLORWAY[index % len(COLORWAY)],
            alpha=0.8,
            linewidths=1.2 if flat else 0,
            label=_plain(name, 40),
        )
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title("\n".join(textwrap.wrap(_plain(title, 400), 90)), fontsize=11, loc="left")
    if 0 < len(grouped) <= PNG_LEGEND_MAX:
        ax.legend(
            title=_plain(color_by, 40),
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            title_fontsize=9,
            frameon=False,
            markerscale=1.5,
        )
    elif grouped:
        ax.text(
            1.01,
            1.0,
            f"{len(grouped)} groups by {_plain(color_by, 40)}\n(too many for a legend)",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            color="#555555",
        )
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glyphs the default font lacks (emoji, CJK) draw as boxes
        fig.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.2, facecolor="white")
    return buffer.getvalue()


def html_page(fig: Any) -> bytes:
    """A plotly figure as one self-contained HTML page (plotly.js inline: opens offline)."""
    page = fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})
    return str(page).encode("utf-8")


def map_bytes(points: Any, fmt: str, *, color_by: str = "leaf", title: str = "") -> bytes:
    """The map as a file's bytes: ``fmt`` ``html`` (interactive, from :func:`figure`) or ``png``
    (static, from :func:`png`). ``points`` is a sequence of :class:`MapPoint`, or, for HTML only,
    a plotly figure already drawn."""
    if fmt not in MAP_FORMATS:
        raise TreeSynthError(f"cannot write a map as {fmt!r}: use html or png")
    drawn = hasattr(points, "to_html")
    if fmt == "png":
        if drawn:
            raise TreeSynthError("a PNG map is drawn from the map's points, not from a plotly figure")
        return png(points, color_by=color_by, title=title)
    return html_page(points if drawn else figure(points, color_by=color_by, title=title))


def write_map(points: Any, out: str | Path, *, color_by: str = "leaf", title: str = "") -> Path:
    """Write the map to ``.html`` (self-contained: plotly.js inline, works offline) or ``.png``
    (matplotlib: no browser or kaleido needed), chosen by the file's suffix; any other suffix is a
    :class:`~treesynth_core.errors.TreeSynthError`. ``points``: as for :func:`map_bytes`."""
    path = Path(out).expanduser()
    fmt = MAP_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise TreeSynthError(f"cannot write a map to {path.name}: use a .html or .png file name")
    data = map_bytes(points, fmt, color_by=color_by, title=title)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
