"""CLI commands for coverage: ``score``, ``map``, ``baseline`` and ``fill-gaps``.

Thin wrappers over :mod:`treesynth_core.coverage.report`, :mod:`~treesynth_core.coverage.maps`,
:mod:`~treesynth_core.generate.baseline` and :mod:`~treesynth_core.generate.gaps`. :func:`register` adds them to the
``treesynth`` app (:mod:`treesynth_core.cli.app` does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import TreeSynthError
from ..generate.gap_report import report_data
from ..jobs.specs import BaselineOptions, GapOptions
from .common import (
    NO_FEATURE_OPTIONS,
    NO_LLM_RUN_OPTIONS,
    AnswerOpt,
    CallbackBar,
    DirArg,
    FeatureOptions,
    JsonOpt,
    LlmRunOptions,
    PerCallOpt,
    QuietOpt,
    SeedOpt,
    VerifyOpt,
    call_line,
    emit,
    err,
    exit_if_short,
    fmt_value,
    llm_json,
    open_project,
    option_groups,
    progress_bar,
    register_commands,
    run_job,
    space_name,
)

GradientsOpt = Annotated[
    bool,
    typer.Option(
        "--gradients",
        help="Use gradient features (G-Vendi) of the project's proxy (default: the embedded SmolLM2-135M; see "
        "--proxy and --grad-max-tokens); slow on CPU.",
    ),
]
BaselineOpt = Annotated[
    bool | None,
    typer.Option(
        "--baseline/--no-baseline",
        help="Include the flat baseline (default: when the project has one; --baseline requires it).",
    ),
]

EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Where features are computed: local (this process) or ray (Ray Data workers, GPUs when the cluster "
        "has them; Parquet shards and Gram partials in DIR/features/; needs the extra: pip install -e '.[ray]').",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="With --engine ray: the cluster (auto, ray://host:port); default a local Ray."),
]
GpusPerWorkerOpt = Annotated[
    float | None,
    typer.Option("--gpus-per-worker", help="With --engine ray: GPUs per worker (default 1 when the cluster has GPUs)."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", help="With --engine ray: workers (default one per GPU share, else 1)."),
]

ResponsesOpt = Annotated[
    bool | None,
    typer.Option("--responses/--no-responses", help="Answer each instruction too (default: as the tree's samples)."),
]
SpaceOpt = Annotated[
    bool,
    typer.Option(
        "--gradients/--embeddings",
        help="Find gaps in gradient space (the default, as Prismatic Synthesis: seconds a sample on a CPU; "
        "the time estimate is printed first) or in embedding space (the fast choice).",
    ),
]


# -- helpers ----------------------------------------------------------------------------------------


def _baseline_wanted(project: Any, flag: bool | None) -> bool:
    """False with --no-baseline; else True (the baseline is used when present; --baseline requires it)."""
    from ..store.samples import BASELINE_SET

    if flag is False:
        return False
    if flag and not project.sample_counts(sample_set=BASELINE_SET):
        raise TreeSynthError(
            f"the project {project.path} has no flat baseline yet: make one with treesynth baseline {project.path}"
        )
    return True


def _score_text(report: dict[str, Any]) -> str:
    sets = report["sets"]
    names = list(sets)
    rows = [
        ("Vendi (q=1)", "1"),
        ("Vendi (q=0.5)", "0.5"),
        ("Vendi (q=2)", "2"),
        ("Vendi (q=inf)", "inf"),
        ("G-Vendi", "g_vendi"),
        ("mean cosine (lower: more diverse)", "mean_cosine"),
        ("distinct-1", "distinct_1"),
        ("distinct-2", "distinct_2"),
    ]
    both = names == ["tree", "baseline"]
    header = f"{'':36}" + "".join(f"{name:>12}" for name in names) + (f"{'tree - base':>14}" if both else "")
    lines = [f"Diversity at equal n = {report['n']} (embedder {report['embedder']})", header]
    for label, key in rows:
        values = [
            sets[name]["vendi_q"].get(key) if key[0].isdigit() or key == "inf" else sets[name].get(key)
            for name in names
        ]
        if all(v is None for v in values):
            continue
        line = f"{label:36}" + "".join(f"{fmt_value(v):>12}" for v in values)
        if both and None not in values:
            line += f"{values[0] - values[1]:>+14.3f}"
        lines.append(line)
    leaves = report["leaves"]
    flagged = {flag: sum(flag in row["flags"] for row in leaves["rows"]) for flag in ("thin", "collapsed", "empty")}
    lines.append("")
    lines.append(
        f"Leaves: {len(leaves['rows'])} ({', '.join(f'{v} {k}' for k, v in flagged.items())}); {leaves['note']}."
    )
    for row in [r for r in leaves["rows"] if r["flags"]][:10]:
        lines.append(
            f"  {row['path'][:60]:60} n={row['n']:<4} Vendi {fmt_value(row['vendi'], 2):>6}  "
            f"cos {fmt_value(row['mean_cosine'], 2):>5}  {', '.join(row['flags'])}"
        )
    lines += ["", *report["notes"]]
    return "\n".join(lines)


# -- commands ---------------------------------------------------------------------------------------


@option_groups
def score(
    directory: DirArg,
    gradients: GradientsOpt = False,
    baseline: BaselineOpt = None,
    n: Annotated[
        int | None, typer.Option("--n", help="Score every set at this many samples (default: the smallest set's size).")
    ] = None,
    seed: SeedOpt = 0,
    features: FeatureOptions = NO_FEATURE_OPTIONS,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    gpus_per_worker: GpusPerWorkerOpt = None,
    workers: WorkersOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Diversity of the tree's samples (and the flat baseline's) at equal n: Vendi, G-Vendi, mean
    cosine, distinct-n, per leaf and per subtree, and diversity against n. With --engine ray, every
    sample's features are computed on Ray first (Parquet shards and per-leaf Gram partials in
    DIR/features/), then scored as usual."""
    from ..coverage.report import coverage_report

    features.check(gradients)
    ray_options = _ray_options(engine, address, gpus_per_worker, workers)
    with open_project(directory) as project:
        include = _baseline_wanted(project, baseline)
        embed = features.embeddings(project)
        grads = features.gradients(project) if gradients else None
        with progress_bar(quiet or as_json) as bar:
            shards = (
                _features_on_ray(project, features, embed, grads, ray_options, CallbackBar(bar, "Ray"))
                if ray_options
                else None
            )
            report = coverage_report(
                project,
                embedder=embed,
                gradient_featurizer=grads,
                include_baseline=include,
                n=n,
                seed=seed,
                progress=CallbackBar(bar, "Features"),
            )
    if report["baseline_missing"]:  # the command to run here; the app has a button for it instead
        report["notes"].append("No flat baseline yet: make one with treesynth baseline DIR to compare against.")
    if shards is not None:
        report["ray"] = shards
        report["notes"] += [
            f"Ray: {s['kind']}: {s['rows']} samples in {s['folder']} ({s['added']} new); "
            f"Vendi of all from the Gram partials {s['vendi_all']:.3f}."
            for s in shards
        ]
    emit(as_json, report, _score_text(report))


def _ray_options(engine: str, address: str | None, gpus: float | None, workers: int | None) -> Any:
    """The Ray options of ``score`` (None for the local engine, which takes none of them)."""
    if engine not in ("local", "ray"):
        raise TreeSynthError(f"--engine must be local or ray, not {engine!r}")
    if engine == "local":
        if address is not None or gpus is not None or workers is not None:
            raise TreeSynthError("--address, --gpus-per-worker and --workers need --engine ray")
        return None
    from ..coverage.distributed import RayOptions

    return RayOptions(address=address, gpus_per_worker=gpus, workers=workers)


def _features_on_ray(
    project: Any, features: FeatureOptions, embed: Any, grads: Any, options: Any, progress: Any
) -> list[dict[str, Any]]:
    """Every sample's embeddings (and gradient features) on Ray, stored in the project; a summary a space."""
    from ..coverage.distributed import EmbedderRecipe, GradientRecipe, project_features_on_ray, vendi_of_leaves
    from ..coverage.features.embeddings import SentenceTransformerEmbedder

    if not isinstance(embed, SentenceTransformerEmbedder):
        raise TreeSynthError("--engine ray runs local sentence-transformers models: use --engine local for openai:")
    jobs: list[tuple[Any, str]] = [(EmbedderRecipe(features.embedder), embed.name)]
    if grads is not None:
        from ..coverage.features.proxy import gradient_settings
        from ..coverage.features.proxy_model import kind_dtype

        settings = gradient_settings(project, proxy=features.proxy, max_tokens=features.grad_max_tokens)
        dtype = kind_dtype(grads.name)  # the workers compute in the driver's precision: the same kind
        jobs.append((GradientRecipe(settings.proxy, settings.max_tokens, dtype), grads.name))
    return [
        {
            "kind": s.kind,
            "folder": str(s.folder),
            "rows": s.rows,
            "added": s.added,
            "dim": s.dim,
            "vendi_all": vendi_of_leaves(s.folder),
        }
        for s in project_features_on_ray(project, jobs, options, progress=progress)
    ]


@option_groups
def map_(
    directory: DirArg,
    out_file: Annotated[Path, typer.Option("--out", help="Output file: .html (interactive, offline) or .png.")] = (
        Path("map.html")
    ),
    gradients: GradientsOpt = False,
    baseline: BaselineOpt = None,
    color_by: Annotated[str, typer.Option("--color-by", help="leaf, subtree, sample_set, or a criterion name.")] = (
        "leaf"
    ),
    seed: SeedOpt = 0,
    n_neighbors: Annotated[int, typer.Option("--n-neighbors", help="UMAP neighbourhood size.")] = 15,
    min_dist: Annotated[float, typer.Option("--min-dist", help="UMAP minimum distance.")] = 0.1,
    features: FeatureOptions = NO_FEATURE_OPTIONS,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """A 2-D UMAP map of the samples' embeddings (or, with --gradients, gradient features); hover shows
    each sample with its path (a .png is a static image of the same map). The layout is cached in the project."""
    from ..coverage.features.embeddings import ensure_features
    from ..coverage.maps import MapOptions, map_points, write_map
    from ..store.samples import BASELINE_SET

    features.check(gradients)
    with open_project(directory) as project:
        samples = project.samples()
        if not samples:
            raise TreeSynthError(f"the project {directory} has no samples yet: run treesynth synth {directory}")
        if _baseline_wanted(project, baseline):
            samples += project.samples(sample_set=BASELINE_SET)
        featurizer = features.load(project, gradients)
        with progress_bar(quiet or as_json) as bar:
            progress = CallbackBar(bar, "Map")
            X = ensure_features(project, samples, featurizer, progress=progress)
            options = MapOptions(seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
            points = map_points(project, samples, X, featurizer.name, options, progress=progress)
        space = "gradient features" if gradients else "embeddings"
        title = f"{project.task[:80]}: UMAP of {space} ({featurizer.name}), {len(points)} samples"
        path = write_map(points, out_file, color_by=color_by, title=title)
    emit(
        as_json,
        {"out": str(path), "points": len(points), "space": featurizer.name, "color_by": color_by},
        f"Wrote a map of {len(points)} samples ({space}, coloured by {color_by}) to {path}",
    )


@option_groups
def baseline_cmd(
    directory: DirArg,
    n: Annotated[int | None, typer.Option("--n", help="Samples to make (default: as many as the tree has).")] = None,
    per_call: PerCallOpt = BaselineOptions.per_call,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Sampling temperature (the paper's Temp baseline samples hot).")
    ] = BaselineOptions.temperature,
    responses: ResponsesOpt = None,
    seed: SeedOpt = 0,
    llm_run: LlmRunOptions = NO_LLM_RUN_OPTIONS,
    as_json: JsonOpt = False,
) -> None:
    """Synthesize the flat baseline: N samples from the task description alone (no tree), with the same
    generator, stored as a separate sample set to compare the tree against (treesynth score).

    Exit status: 0 done, 1 an error or no sample made (every reply unusable), 3 some calls got no
    usable reply (make the baseline again to retry them).
    """
    with open_project(directory) as project:
        settings = llm_run.backend.resolve(project)
        target = n if n is not None else sum(project.sample_counts().values())
        if target < 1:
            raise TreeSynthError("the tree has no samples to match: synthesize first, or pass --n N")
        options = BaselineOptions(n=target, per_call=per_call, temperature=temperature, seed=seed, responses=responses)
        params = {"n": target, "per_call": per_call, "temperature": temperature, "seed": seed, "responses": responses}
        report, stats = run_job(
            project, "baseline", options, params, settings, llm_run, as_json, description="Flat baseline"
        )
    data = {**dataclasses.asdict(report), "short": report.short, "llm": llm_json(stats)}
    short = (
        f" ({report.short} short: duplicates dropped or replies unusable; --seed {seed + 1} asks new questions)"
        if report.short
        else ""
    )
    emit(
        as_json,
        data,
        f"Flat baseline: {report.total} of {target} samples{short}; added {report.added}, "
        f"{report.duplicates} duplicates dropped.\n{call_line(stats)}\n"
        f"Compare: treesynth score {directory}",
    )
    exit_if_short(report)


@option_groups
def fill_gaps(
    directory: DirArg,
    rounds: Annotated[int, typer.Option("--rounds", help="Gap-filling rounds.")] = GapOptions.rounds,
    per_round: Annotated[
        int, typer.Option("--per-round", help="Candidate samples generated per round.")
    ] = GapOptions.per_round,
    gradients: SpaceOpt = True,
    features: FeatureOptions = NO_FEATURE_OPTIONS,
    seed: SeedOpt = 0,
    verify: VerifyOpt = GapOptions.verify,
    answer: AnswerOpt = GapOptions.answer,
    shots_from: Annotated[
        str,
        typer.Option(
            "--shots-from",
            help="Few-shot examples from: sparse (the sparse clusters), levels (the pool, weighted by each "
            "sample's extra 'level', as the released code) or smallest (the smallest tenth of the clusters, as "
            "the paper's text).",
        ),
    ] = GapOptions.shots_from,
    llm_run: LlmRunOptions = NO_LLM_RUN_OPTIONS,
    as_json: JsonOpt = False,
) -> None:
    """Generate candidates and keep those that land in sparse regions of the feature space (Prismatic
    Synthesis). Gradient space by default, as the paper: the time its features take is printed first
    (measured on a few samples when the project has no record yet); --embeddings is the fast choice.
    Prints a table per round: generated, verified, rejected and kept candidates, and the pool's Vendi
    against a random-acceptance baseline (as many candidates kept at random).

    Exit status: 0 done, 1 an error or no call answered (every reply unusable), 3 some calls got no
    usable reply (run fill-gaps again for new candidates).
    """
    try:
        from ..generate import gaps  # noqa: F401  (numpy and the featurizers: fail before opening the project)
    except ImportError as exc:
        raise TreeSynthError(f"gap filling is not available in this install ({exc})") from None

    features.check(gradients)
    with open_project(directory) as project:
        settings = llm_run.backend.resolve(project)
        featurizer = features.load(project, gradients)
        estimate = _gap_estimate(project, featurizer, rounds * per_round, features) if gradients else None
        if estimate is not None and not as_json:
            err.print(f"Gradient features: {estimate.text()}", highlight=False)
        try:
            options = GapOptions(
                rounds=rounds,
                per_round=per_round,
                seed=seed,
                space=space_name(gradients),
                verify=verify,
                answer=answer,
                shots_from=shots_from,
            )
        except ValueError as exc:
            raise TreeSynthError(str(exc)) from None
        params = {"rounds": rounds, "per_round": per_round, "seed": seed, "space": featurizer.name}
        if verify:
            params |= {"verify": verify, "answer": answer}
        if shots_from != GapOptions.shots_from:
            params["shots_from"] = shots_from
        report, stats = run_job(
            project,
            "fill-gaps",
            options,
            params,
            settings,
            llm_run,
            as_json,
            description="Filling gaps",
            feats=featurizer,
        )
        leaves = _leaf_labels(project, report)
    data = {**report_data(report), "leaves": leaves, "llm": llm_json(stats)}
    if estimate is not None:
        data["gradient_estimate"] = dataclasses.asdict(estimate)
    emit(
        as_json,
        data,
        f"Gap filling ({report.space}): {report.rounds} rounds, {report.accepted} of {report.candidates} "
        f"candidates kept ({report.acceptance_rate:.0%}); diversity {report.before:.3f} -> {report.after:.3f} "
        f"at n = {report.n}.{_verify_line(report, verify)}\n\n{_rounds_text(report, leaves)}\n\n{call_line(stats)}",
    )
    exit_if_short(report)


def _verify_line(report: Any, draws: int) -> str:
    """What verification did ("" when it was off)."""
    if not draws:
        return ""
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(report.rejected_reasons.items()))
    return (
        f"\nVerification ({draws} draws, majority vote): {report.verified} verified, {report.rejected} rejected"
        + (f" ({reasons})" if reasons else "")
        + "."
    )


def _rounds_text(report: Any, leaves: dict[str, str]) -> str:
    """The per-round table (generated, verified, rejected, kept, acceptance, clusters, and the pool's
    Vendi against the random-acceptance baseline at its n), the cluster sizes of each round, and the
    rejections by the vote per leaf."""
    voted = bool(report.verify)
    head = f"{'round':>5} {'generated':>9} {'verified':>8} {'rejected':>8} {'kept':>5} {'accepted':>8} "
    head += f"{'sparse/clusters':>15} {'n':>6} {'Vendi':>8} {'random':>8}"
    lines = [head]
    for r in report.per_round:
        point = report.point(r.round)
        vote = f"{r.verified:>8} {r.rejected:>8}" if voted else f"{'-':>8} {'-':>8}"
        curve = f"{point.n:>6} {point.kept:>8.3f} {point.random:>8.3f}" if point else f"{'':>6} {'':>8} {'':>8}"
        lines.append(
            f"{r.round:>5} {r.candidates:>9} {vote} {r.kept:>5} {r.acceptance_rate:>8.0%} "
            f"{f'{r.sparse}/{r.clusters}':>15} {curve}"
        )
    start = report.curve[0] if report.curve else None
    if start is not None:
        lines.append(
            f"Before the run: n = {start.n}, Vendi {start.kept:.3f}. Random: as many candidates kept at random."
        )
    for r in report.per_round:
        sizes = ", ".join(f"{n}x{size}" for size, n in r.cluster_sizes)
        lines.append(f"Round {r.round} cluster sizes (clusters x size): {sizes or '-'}")
    rejected = report.rejected_by_leaf()
    if voted and rejected:
        lines.append("Rejected by the vote, per leaf:")
        for leaf, n in sorted(rejected.items(), key=lambda item: -item[1]):
            by_round = ", ".join(
                f"round {r.round}: {r.rejected_by_leaf[leaf]}" for r in report.per_round if leaf in r.rejected_by_leaf
            )
            lines.append(f"  {leaves.get(leaf, leaf)[:60]}: {n} ({by_round})")
    return "\n".join(lines)


def _leaf_labels(project: Any, report: Any) -> dict[str, str]:
    """``criterion=value / ...`` of each leaf the report's vote names (those still in the tree)."""
    from ..data.routing import path_label

    tree = project.tree()
    named = {*report.verified_by_leaf(), *report.rejected_by_leaf()}
    return {leaf: path_label(tree, leaf) for leaf in sorted(named) if leaf in tree.nodes}


def _gap_estimate(project: Any, featurizer: Any, candidates: int, features: FeatureOptions) -> Any:
    """The gradient-time estimate of fill-gaps; without a record of this proxy in the project, a few
    of the pool's samples are featurized (and stored) first to measure it."""
    from ..coverage.features.proxy import gradient_estimate, gradient_settings, measure, missing_features, timings

    grads = gradient_settings(project, proxy=features.proxy, max_tokens=features.grad_max_tokens)
    if not timings(project, featurizer.name):
        missing = missing_features(project, featurizer.name)
        err.print(f"Measuring gradient features ({featurizer.name}) on a few samples...", highlight=False)
        measure(featurizer, missing or project.samples(), store=project if missing else None)
    return gradient_estimate(project, grads, candidates=candidates)


COMMANDS: dict[str, Callable[..., Any]] = {
    "score": score,
    "map": map_,
    "baseline": baseline_cmd,
    "fill-gaps": fill_gaps,
}


def register(app: typer.Typer) -> None:
    """Add ``score``, ``map``, ``baseline`` and ``fill-gaps`` to ``app`` (once; calling again is a no-op)."""
    register_commands(app, COMMANDS)
