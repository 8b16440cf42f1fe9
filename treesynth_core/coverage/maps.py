"""2-D maps of the samples: UMAP of their embeddings or gradient features, cached in the project.

:func:`~.map_layout.umap_2d` is a pure function over arrays (seeded: same input and seed, same
coordinates). :func:`map_points` lays out a set of samples, caches the coordinates in the project (keyed by a hash
of the feature kind, the sample ids, the parameters and the features themselves) and returns them as
:class:`~.map_points.MapPoints`: columns of sample ids, coordinates and each point's leaf, path and
criterion values, read from the store without an object per sample (each point's origin is kept
with the map: :mod:`.map_origins`; :func:`latest_map_points` reads the map's own rows). :func:`figure` draws the
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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import TreeSynthError
from ..progress import Progress
from ..store.columns import SampleColumns
from ..store.samples import BASELINE_SET, TREE_SET, Sample
from .map_density import DENSITY_ABOVE, DRAWN_POINTS, density_trace, drawn_indices
from .map_layout import DEFAULT_MAP, MapOptions, umap_2d
from .map_origins import (
    KeptOrigins,
    OriginStore,
    current_origins,
    forget_moves,
    keep_origins,
    kept_origins,
    moved_since,
)
from .map_points import BASELINE_LABEL, MapPoints, Origin, origins_of
from .map_transform import PLACE_METRICS

if TYPE_CHECKING:
    from ..tree.model import Tree


#: Bump when the layout changes meaning, so old cached maps stop matching.
MAP_CACHE_VERSION = "map-v1"
#: Points shown with WebGL (Scattergl) above this many.
WEBGL_ABOVE = 2_000
HOVER_CHARS = 400
#: Hover labels wrap at this many characters.
HOVER_WIDTH = 80
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
#: The HTML map draws each group as a trace of its own (a legend entry) up to this many groups (the
#: examples' 55 leaves each keep theirs); past it the largest keep theirs and the rest share one trace,
#: coloured point by point: a legend of thousands of leaves reads as nothing, and each trace is one
#: more draw for the browser.
LEGEND_GROUPS = 60
MAP_FORMATS = ("html", "png")
MAP_SUFFIXES = {".html": "html", ".htm": "html", ".png": "png"}


# -- points ---------------------------------------------------------------------------------------


class MapStore(OriginStore, Protocol):
    def tree(self) -> Tree: ...

    def instructions(self, sample_ids: Iterable[int]) -> dict[int, str]: ...


def map_cache_key(kind: str, sample_ids: Sequence[int], X: np.ndarray, params: dict[str, Any]) -> str:
    """Content key of a layout: feature kind, sample ids, UMAP parameters and the features' bytes."""
    digest = hashlib.blake2b(digest_size=20)
    header = {"kind": kind, "ids": [int(i) for i in sample_ids], "params": params, "shape": list(X.shape)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(X, dtype=np.float32).data)  # in place: no copy of the features
    return f"{MAP_CACHE_VERSION}:{digest.hexdigest()}"


def leaf_labels(tree: Tree) -> dict[str, str]:
    """A readable label for every node: its values from the root, e.g. "addition > fruit"."""
    labels = {}
    for node_id in tree.nodes:
        steps = [n.label for n in tree.ancestors(node_id) if not n.is_root] + [tree.node(node_id).label]
        labels[node_id] = " > ".join(s for s in steps if s and s != "root") or "root"
    return labels


def lay_out(
    store: MapStore,
    sample_ids: np.ndarray,
    X: np.ndarray,
    kind: str,
    options: MapOptions = DEFAULT_MAP,
    *,
    progress: Progress | None = None,
) -> np.ndarray:
    """The coordinates (array of shape (n, 2)) of the samples ``sample_ids`` (features ``X``, one row
    each, of feature kind ``kind``) by :func:`umap_2d` with ``options``, fitted on a sample of
    ``options.max_fit`` when there are more. They are cached in the store, so the same map is
    computed once, and become the map :func:`latest_map_points` reads."""
    return _lay_out(store, sample_ids, X, kind, options, progress)[0]


def _lay_out(
    store: MapStore, sample_ids: np.ndarray, X: np.ndarray, kind: str, options: MapOptions, progress: Progress | None
) -> tuple[np.ndarray, str]:
    """:func:`lay_out`'s coordinates and the layout's cache key."""
    ids = np.asarray(sample_ids, dtype=np.int64)
    features = np.asarray(X, dtype=np.float32)
    if features.shape[0] != ids.size:
        raise ValueError(f"{features.shape[0]} feature rows for {ids.size} samples")
    params = options.umap_kwargs()
    del params["max_fit"]
    if options.max_fit is not None and ids.size > options.max_fit and options.metric in PLACE_METRICS:
        params["max_fit"] = options.max_fit  # below it the key (and the layout) is what it always was
    key = map_cache_key(kind, ids.tolist(), features, params)
    cached = store.get_blob(key)
    if cached is not None and len(cached) == 16 * ids.size:
        coords = np.frombuffer(cached, dtype=np.float64).reshape(-1, 2)
    else:
        if progress:
            progress(0, 1, f"UMAP of {ids.size} points")
        coords = umap_2d(features, **options.umap_kwargs())
        store.put_blob(key, np.ascontiguousarray(coords, dtype=np.float64).tobytes())
    _remember_latest(store, kind, options.seed, key, ids)
    if progress:
        progress(1, 1, "map ready")
    return coords, key


def map_points(
    store: MapStore,
    samples: Sequence[Sample],
    X: np.ndarray,
    kind: str,
    options: MapOptions = DEFAULT_MAP,
    *,
    progress: Progress | None = None,
) -> MapPoints:
    """Lay out ``samples`` (features ``X``, one row each) with :func:`lay_out` (cached) and return
    them as the map's columns (read back as :func:`latest_map_points` reads them)."""
    ids = np.fromiter((s.id for s in samples), dtype=np.int64, count=len(samples))
    coords, key = _lay_out(store, ids, X, kind, options, progress)
    sets = tuple(dict.fromkeys(s.sample_set for s in samples))
    latest = json.loads(store.get_blob(_latest_key(kind, options.seed)) or b"{}")
    kept = kept_origins(store, latest, ids.size) if latest.get("key") == key else None
    if kept is None:  # another map of this kind became the latest meanwhile: read the samples' columns
        return _points(store, store.sample_columns(sets), ids, coords)
    return _kept_points(store, ids, coords, kept, sets)


def _latest_key(kind: str, seed: int) -> str:
    return f"{MAP_CACHE_VERSION}:latest:{kind}:{seed}"


def _remember_latest(store: MapStore, kind: str, seed: int, key: str, ids: np.ndarray) -> None:
    """Make ``key`` the latest map of ``kind``: its sample ids (int64) beside its coordinates, and
    its points' origins (:mod:`.map_origins`), unless they are kept already and no sample moved since."""
    blob = store.get_blob(_latest_key(kind, seed))
    previous = json.loads(blob) if blob is not None else {}
    if previous.get("key") == key and store.get_blob(f"{key}:ids") is not None:
        kept = kept_origins(store, previous, ids.size)
        if kept is not None and not moved_since(store, kept):
            return
    store.put_blob(f"{key}:ids", np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    latest = {"key": key, "n": int(ids.size), **keep_origins(store, key, ids)}
    store.put_blob(_latest_key(kind, seed), json.dumps(latest).encode())
    forget_moves(store, f"{MAP_CACHE_VERSION}:latest:")


def latest_map_points(
    store: MapStore, kind: str, *, seed: int = 0, sample_sets: Iterable[str] = (TREE_SET, BASELINE_SET)
) -> MapPoints | None:
    """The last map laid out for ``kind``, on those of its samples still in ``sample_sets`` (samples
    added since are not on it, deleted ones are gone, moved ones show their new leaf and path);
    ``None`` when no map of ``kind`` was laid out yet. Reads the map's own rows (ids, coordinates,
    an origin code per point) and looks up only the samples deleted or moved since it was written;
    reads no features and makes no object per point."""
    blob = store.get_blob(_latest_key(kind, seed))
    if blob is None:
        return None
    latest = json.loads(blob)
    if "ids" in latest:  # written before the ids had a blob of their own
        ids = np.asarray(latest["ids"], dtype=np.int64)
    else:
        ids_blob = store.get_blob(f"{latest['key']}:ids")
        ids = np.frombuffer(ids_blob or b"", dtype=np.int64)
    coords_blob = store.get_blob(latest["key"])
    if coords_blob is None or len(coords_blob) != 16 * ids.size:
        return None
    coords = np.frombuffer(coords_blob, dtype=np.float64).reshape(-1, 2)
    kept = kept_origins(store, latest, ids.size)
    if kept is None:  # a map written before its origins were kept: the samples' GROUP BY
        return _points(store, store.sample_columns(sample_sets), ids, coords)
    return _kept_points(store, ids, coords, kept, sample_sets)


def _kept_points(
    store: MapStore, ids: np.ndarray, coords: np.ndarray, kept: KeptOrigins, sample_sets: Iterable[str]
) -> MapPoints:
    """The map's points from the origins kept with it: what :func:`_points` makes from the samples'
    columns, without reading them all."""
    keep, codes, origins = current_origins(store, ids, kept, sample_sets)
    return MapPoints(
        sample_id=ids[keep],
        x=np.ascontiguousarray(coords[keep, 0]),
        y=np.ascontiguousarray(coords[keep, 1]),
        origin=codes,
        origins=origins_of(origins, leaf_labels(store.tree())),
        texts=lambda wanted: _texts(store, wanted),
    )


def _points(store: MapStore, columns: SampleColumns, ids: np.ndarray, coords: np.ndarray) -> MapPoints:
    """The map's points of those ``ids`` still among ``columns``, at ``coords`` (one row per id)."""
    rows = columns.rows_of(ids)
    kept = rows >= 0
    return MapPoints(
        sample_id=ids[kept],
        x=np.ascontiguousarray(coords[kept, 0]),
        y=np.ascontiguousarray(coords[kept, 1]),
        origin=columns.origin[rows[kept]],
        origins=origins_of(columns.origins, leaf_labels(store.tree())),
        texts=lambda wanted: _texts(store, wanted),
    )


def _texts(store: MapStore, sample_ids: np.ndarray) -> list[str]:
    found = store.instructions(sample_ids.tolist())
    return [found.get(int(i), "") for i in sample_ids]


# -- drawing --------------------------------------------------------------------------------------


def wrap(text: str, width: int) -> list[str]:
    """``text``'s words in lines of at most ``width`` characters (a longer word is cut), at least one
    line: :func:`textwrap.wrap` without its options, several times faster for hover labels."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        while len(word) > width:
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:width])
            word = word[width:]
        if not word:
            continue
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line or not lines else lines


def hover_texts(points: MapPoints) -> list[str]:
    """The hover labels of the points: path, text (wrapped, shortened) and provenance; ``<``, ``>``
    and ``&`` escaped, because plotly reads tags (``<b>``, ``<br>``) in hover text."""
    out = []
    for sample_id, code, text in zip(points.sample_id.tolist(), points.origin.tolist(), points.text(), strict=True):
        origin = points.origins[code]
        body = text if len(text) <= HOVER_CHARS else text[: HOVER_CHARS - 1] + "…"
        lines = wrap(body, HOVER_WIDTH)
        out.append(
            f"<b>{html.escape(origin.path or origin.leaf_label, quote=False)}</b><br>"
            + "<br>".join(html.escape(line, quote=False) for line in lines)
            + f"<br><i>{html.escape(origin.sample_set, quote=False)} · sample {sample_id}</i>"
        )
    return out


def color_options(points: MapPoints) -> list[str]:
    """What :func:`figure` can colour by: leaf, subtree, sample_set and each criterion present."""
    criteria = dict.fromkeys(c for o in points.present() for c in o.criteria)
    return ["leaf", "subtree", "sample_set", *criteria]


def _group(origin: Origin, color_by: str) -> str:
    if color_by == "sample_set":
        return origin.sample_set
    if origin.flat:
        return BASELINE_LABEL if origin.leaf_label == BASELINE_LABEL else origin.sample_set
    if color_by == "leaf":
        return origin.leaf_label
    if color_by == "subtree":
        return origin.leaf_label.split(" > ", 1)[0]
    return origin.criteria.get(color_by, f"(no {color_by})")


def groups(points: MapPoints, color_by: str = "leaf") -> dict[str, np.ndarray]:
    """The points' rows by colour group, in order of first appearance (one legend entry each).

    Raises a :class:`~treesynth_core.errors.TreeSynthError` when ``color_by`` is not one of
    :func:`color_options`.
    """
    options = color_options(points)
    if len(points) and color_by not in options:
        raise TreeSynthError(f"cannot colour the map by {color_by!r}: choose one of {', '.join(options)}")
    names: dict[str, int] = {}
    of_origin = np.array([names.setdefault(_group(o, color_by), len(names)) for o in points.origins], dtype=np.int64)
    code = of_origin[points.origin] if len(points) else np.zeros(0, dtype=np.int64)
    order = np.argsort(code, kind="stable")
    bounds = np.searchsorted(code[order], np.arange(len(names) + 1))
    by_name = {name: order[bounds[i] : bounds[i + 1]] for name, i in names.items() if bounds[i + 1] > bounds[i]}
    return dict(sorted(by_name.items(), key=lambda item: int(item[1][0])))


def legend_groups(grouped: Mapping[str, np.ndarray], limit: int = LEGEND_GROUPS) -> tuple[list[str], list[str]]:
    """Which groups the HTML map draws as traces of their own (legend entries), and which share one:
    all of them when at most ``limit`` are not the flat baseline; past it the ``limit - 1`` largest
    keep theirs (the flat baseline always does, so showing it moves no other group), in the order of
    ``grouped``, and the rest share the last."""
    names = list(grouped)
    others = [name for name in names if name != BASELINE_LABEL]
    if len(others) <= limit:
        return names, []
    keep = set(sorted(others, key=lambda n: -grouped[n].size)[: max(0, limit - 1)])
    return [n for n in names if n in keep or n == BASELINE_LABEL], [n for n in others if n not in keep]


def _plural_group(color_by: str) -> str:
    return {"leaf": "leaves", "subtree": "subtrees", "sample_set": "sample sets"}.get(color_by, "values")


def figure(points: MapPoints, *, color_by: str = "leaf", title: str = "") -> Any:
    """A plotly scatter of the points, one trace (legend entry) per group, coloured as :func:`png`
    colours it (up to :data:`LEGEND_GROUPS` groups; see :func:`legend_groups`).

    Parameters
    ----------
    points : MapPoints
    color_by : str
        ``leaf``, ``subtree`` (the first split's value), ``sample_set`` or a criterion name.
        Flat-baseline points form their own grey group unless colouring by sample_set.
    title : str

    Above :data:`~treesynth_core.coverage.map_density.DENSITY_ABOVE` points, a density image of all
    of them lies under a seeded sample of them (the only ones hover and selection see, and the only
    ones whose texts are read).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    if len(points) > DENSITY_ABOVE:  # every point as a density image, a seeded sample as points
        groups(points, color_by)  # a colour choice is checked against every point, not the sample
        fig.add_trace(density_trace(points.x, points.y, name=f"all {len(points):,} points"))
        points = points.take(drawn_indices(len(points), above=DENSITY_ABOVE, limit=DRAWN_POINTS))
    scatter = "scattergl" if len(points) > WEBGL_ABOVE else "scatter"
    hover = np.array(hover_texts(points), dtype=object)
    leaf_ids = points.column("leaf_id")
    grouped = groups(points, color_by)
    colour = {name: COLORWAY[i % len(COLORWAY)] for i, name in enumerate(grouped)}  # as the PNG's
    own, shared = legend_groups(grouped, LEGEND_GROUPS)

    def trace(name: str, rows: np.ndarray, color: Any) -> dict[str, Any]:
        flat = name == BASELINE_LABEL
        return {
            "type": scatter,
            "x": points.x[rows],
            "y": points.y[rows],
            "mode": "markers",
            "name": html.escape(name[:60], quote=False),
            "text": hover[rows],
            "hovertemplate": "%{text}<extra></extra>",
            "customdata": np.column_stack([points.sample_id[rows].astype(object), leaf_ids[rows]]),
            "marker": {"size": 6, "opacity": 0.8, "color": BASELINE_COLOR if flat else color}
            | ({"symbol": "x"} if flat else {}),
        }

    traces = [trace(name, grouped[name], colour[name]) for name in own]
    if shared:
        rows = np.concatenate([grouped[name] for name in shared])
        colours = np.concatenate([np.full(grouped[name].size, colour[name], dtype=object) for name in shared])
        traces.append(trace(f"{len(shared):,} more {_plural_group(color_by)}", rows, colours))
    # All at once, as dicts: a trace object built and added one by one costs ~5 ms.
    fig.add_traces(traces)
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


def png(points: MapPoints, *, color_by: str = "leaf", title: str = "") -> bytes:
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
    for index, (name, rows) in enumerate(grouped.items()):
        flat = name == BASELINE_LABEL
        ax.scatter(
            points.x[rows],
            points.y[rows],
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
    (static, from :func:`png`). ``points`` is a :class:`~.map_points.MapPoints`, or, for HTML only,
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
