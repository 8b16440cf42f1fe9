"""What every ``treesynth`` command shares: consoles, option types, error handling, progress bars,
JSON output, and running LLM work as one logged run."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import ConfigError, TreeSynthError
from ..llm.settings import (
    ALLOW_KEY_ENV_VAR,
    TRUST_ENDPOINT_VAR,
    BackendSettings,
    Endpoint,
    merge_settings,
    settings_from_env,
)

if TYPE_CHECKING:
    from ..store import CallCounts, RunStats

#: Results and messages are printed without rich's hard wrapping at the console width (80 columns
#: when piped), so a line stays one line in a pipe, a file or a log; a terminal wraps long lines itself.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
STATE: dict[str, Any] = {"debug": False, "announced": set()}
F = TypeVar("F", bound=Callable[..., Any])

EMBEDDED_NOTE = (
    "Using the embedded SmolLM2-135M model: everything runs offline, but a 135M model proposes weak "
    "criteria. For real trees use a capable model: --llm openai --base-url URL --model NAME."
)

# -- shared options ---------------------------------------------------------------------------------
DirArg = Annotated[Path, typer.Argument(help="The project folder.", show_default=False, metavar="DIR")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")]
LlmOpt = Annotated[str | None, typer.Option("--llm", help="Backend: embedded (offline default) or openai.")]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name at the endpoint.")]
KeyEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key-env", help="NAME of the environment variable holding the API key (the key itself is never stored)."
    ),
]
AllowKeyEnvOpt = Annotated[
    str | None,
    typer.Option(
        "--allow-key-env",
        help="Send the value of this variable as the key although the project names it and it does not look "
        f"like a key variable (*_API_KEY, *_KEY, *_TOKEN); also ${ALLOW_KEY_ENV_VAR}.",
        show_default=False,
    ),
]
TrustEndpointOpt = Annotated[
    bool,
    typer.Option(
        "--trust-endpoint",
        help="Send requests (and the key) to the endpoint saved in the project although it is neither OpenAI's "
        f"nor this machine's; also ${TRUST_ENDPOINT_VAR}=HOST.",
    ),
]
GgufOpt = Annotated[str | None, typer.Option("--gguf", help="Path to a local GGUF model for the embedded backend.")]
ConcOpt = Annotated[int | None, typer.Option("--concurrency", help="Requests in flight at once (openai backend).")]
EmbedderOpt = Annotated[
    str | None,
    typer.Option(
        "--embedder",
        help="Embedding model: empty for the embedded all-MiniLM-L6-v2 (offline), a sentence-transformers "
        "model folder or cached name, or openai:MODEL for the project's OpenAI-compatible /v1/embeddings.",
    ),
]
ProxyOpt = Annotated[
    str | None,
    typer.Option(
        "--proxy",
        help="Gradient proxy for G-Vendi (with --gradients): a local causal-LM checkpoint folder or a .gguf "
        "file, never downloaded. Default: the project's setting (treesynth settings DIR --proxy), else the "
        "embedded SmolLM2-135M-Instruct; the paper uses Qwen2.5-0.5B-Instruct. Each proxy's features are "
        "stored apart.",
        show_default=False,
    ),
]
GradTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--grad-max-tokens",
        help="Cut each sample to this many tokens for gradient features (with --gradients). Default: the "
        "project's setting, else 512, which keeps most of a chain-of-thought response (2.3 s a sample on 2 CPU "
        "cores); 128 is about 5x faster but its loss sees ~10% of a 570-token response; 0: no cut, as the "
        "paper (slowest). "
        "Features at each cut are stored apart.",
        show_default=False,
    ),
]
SeedOpt = Annotated[
    int,
    typer.Option("--seed", help="Seed of every sampled choice: subsamples, layouts, routing (same seed, same result)."),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
PerCallOpt = Annotated[int, typer.Option("--per-call", help="Samples asked for in one LLM call.")]
VerifyOpt = Annotated[
    int,
    typer.Option(
        "--verify",
        metavar="K",
        help="Answer each question K times (temperature 0.75, as Prismatic Synthesis) and keep it only when a "
        "strict majority agree on the final answer; the kept sample gets the first majority answer. 0: off.",
    ),
]
AnswerOpt = Annotated[
    str,
    typer.Option(
        "--answer",
        help="How --verify finds a final answer: last-number (the last number; 1,000 = 1000.0 = 1e3) or boxed "
        "(the last \\boxed{...}).",
    ),
]
MaxCallsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-calls", help="Stop after this many LLM calls (cached replies and collected batch replies are free)."
    ),
]

WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="When another run is working on this project (one run at a time writes it), wait for it to "
        "finish instead of refusing.",
    ),
]


#: The backend options (``--llm`` ... ``--concurrency``): name -> (typer type, default).
BACKEND_OPTIONS: dict[str, tuple[Any, Any]] = {
    "llm": (LlmOpt, None),
    "base_url": (BaseUrlOpt, None),
    "model": (ModelOpt, None),
    "api_key_env": (KeyEnvOpt, None),
    "gguf": (GgufOpt, None),
    "concurrency": (ConcOpt, None),
    "allow_key_env": (AllowKeyEnvOpt, None),
    "trust_endpoint": (TrustEndpointOpt, False),
}
#: The options of a command that runs LLM work as one logged run: its call limit, the backend, the bar.
LLM_RUN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "max_calls": (MaxCallsOpt, None),
    **BACKEND_OPTIONS,
    "quiet": (QuietOpt, False),
    "wait": (WaitOpt, False),
}


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """The backend options an LLM command takes (``--llm`` ... ``--concurrency``), as given (None: not
    given, so the project's setting or the environment's holds)."""

    llm: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    gguf: str | None = None
    concurrency: int | None = None
    allow_key_env: str | None = None
    trust_endpoint: bool = False

    def overrides(self) -> dict[str, Any]:
        """These options as overrides of :class:`BackendSettings` fields."""
        return {
            "backend": self.llm,
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "gguf_path": self.gguf,
            "concurrency": self.concurrency,
        }

    def resolve(self, project: Any) -> BackendSettings:
        """The project's settings, then the environment's, then these options (checked for a key variable
        or an endpoint the project names but the person did not confirm)."""
        return resolve_settings(
            project, self.overrides(), allow_key_env=self.allow_key_env, trust_endpoint=self.trust_endpoint
        )


NO_BACKEND_OPTIONS = BackendOptions()


@dataclasses.dataclass(frozen=True)
class LlmRunOptions:
    """:data:`LLM_RUN_OPTIONS` as given: ``--max-calls``, the backend options, ``--quiet`` and ``--wait``."""

    max_calls: int | None = None
    backend: BackendOptions = NO_BACKEND_OPTIONS
    quiet: bool = False
    wait: bool = False

    @classmethod
    def of(cls, given: dict[str, Any]) -> LlmRunOptions:
        backend = {k: v for k, v in given.items() if k in BACKEND_OPTIONS}
        return cls(
            max_calls=given.get("max_calls"),
            backend=BackendOptions(**backend),
            quiet=given.get("quiet", False),
            wait=given.get("wait", False),
        )


NO_LLM_RUN_OPTIONS = LlmRunOptions()

#: The options that choose a command's featurizers: the embedder and the gradient proxy with its cut.
FEATURE_OPTIONS: dict[str, tuple[Any, Any]] = {
    "embedder": (EmbedderOpt, None),
    "proxy": (ProxyOpt, None),
    "grad_max_tokens": (GradTokensOpt, None),
}


@dataclasses.dataclass(frozen=True)
class FeatureOptions:
    """:data:`FEATURE_OPTIONS` as given (None: the project's setting, else the embedded default)."""

    embedder: str | None = None
    proxy: str | None = None
    grad_max_tokens: int | None = None

    def check(self, gradients: bool) -> None:
        """--proxy and --grad-max-tokens only make sense with gradient features."""
        check_gradient_options(gradients, self.proxy, self.grad_max_tokens)

    def embeddings(self, project: Any) -> Any:
        return load_embedder(project, self.embedder)

    def gradients(self, project: Any) -> Any:
        return load_gradient_featurizer(project, self.proxy, self.grad_max_tokens)

    def load(self, project: Any, gradients: bool) -> Any:
        """The featurizer of the space a ``--gradients`` flag names."""
        return self.gradients(project) if gradients else self.embeddings(project)


NO_FEATURE_OPTIONS = FeatureOptions()

#: The option groups a command's signature may name: parameter -> (its typer options, how they pack).
OPTION_GROUPS: dict[str, tuple[dict[str, tuple[Any, Any]], Callable[[dict[str, Any]], Any]]] = {
    "backend": (BACKEND_OPTIONS, lambda given: BackendOptions(**given)),
    "llm_run": (LLM_RUN_OPTIONS, LlmRunOptions.of),
    "features": (FEATURE_OPTIONS, lambda given: FeatureOptions(**given)),
}


def option_groups(fn: F) -> F:
    """Give a command the option groups its signature names (``backend: BackendOptions``, ``llm_run:
    LlmRunOptions``, ``features: FeatureOptions``), each declared once in :data:`OPTION_GROUPS`: the group's typer options stand in the
    parameter's place (so --help lists them there), and the command receives them packed in one value.
    Called from Python, the command takes either the packed value or the options."""
    signature = inspect.signature(fn, eval_str=True)
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name in OPTION_GROUPS:
            options, _ = OPTION_GROUPS[param.name]
            params += [
                inspect.Parameter(name, param.kind, default=default, annotation=alias)
                for name, (alias, default) in options.items()
            ]
        else:
            params.append(param)
    groups = {name: OPTION_GROUPS[name] for name in signature.parameters if name in OPTION_GROUPS}

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for group, (options, pack) in groups.items():
            given = {name: kwargs.pop(name) for name in options if name in kwargs}
            if given:
                kwargs[group] = pack(given)
        return fn(*args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": signature.return_annotation}
    return wrapper  # type: ignore[return-value]


def handle_errors(fn: F) -> F:
    """Print TreeSynth errors as one line and exit 1 (a traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TreeSynthError as exc:
            if STATE["debug"]:
                raise
            print_error(str(exc))
            raise typer.Exit(1) from None
        except OSError as exc:  # the system refused: a name too long, a full disk, no permission
            if STATE["debug"]:
                raise
            print_error(str(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("stopped (Ctrl-C). Everything finished so far is saved; rerun the command to resume.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


#: The exit status of a run that made part of what it was asked for because some replies were
#: unusable (a run that made none of it exits 1, like any error).
PARTIAL_EXIT = 3


def exit_if_short(report: Any) -> None:
    """After a run's result is printed: when some of its work got no usable reply (its report's
    ``shortfall()``), say so in one line on stderr and exit :data:`PARTIAL_EXIT`."""
    from ..generate.shortfall import shortfall_of

    short = shortfall_of(report)
    if short is not None:
        err.print(f"[bold yellow]partly failed:[/] {escape(short.message())}", highlight=False, soft_wrap=True)
        raise typer.Exit(PARTIAL_EXIT)


def print_error(message: str) -> None:
    """An error as one line on stderr, however narrow the terminal (and unwrapped in a pipe)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def register_commands(app: typer.Typer, commands: Mapping[str, Callable[..., Any]]) -> None:
    """Add ``commands`` (name -> function) to ``app`` with :func:`handle_errors`, skipping the names it
    already has (so registering twice is a no-op)."""
    present = {command.name for command in app.registered_commands}
    for name, fn in commands.items():
        if name not in present:
            app.command(name)(handle_errors(fn))


def open_project(directory: Path) -> Any:
    from ..store import Project

    return Project.open(directory)


def resolve_settings(
    project: Any,
    overrides: dict[str, Any],
    *,
    allow_key_env: str | None = None,
    trust_endpoint: bool = False,
    endpoint: bool | None = None,
) -> BackendSettings:
    """The project's settings, then ``TREESYNTH_*`` variables, then ``overrides``. When they reach an
    openai-compatible ``endpoint`` (default: the openai backend), refuse a key variable or endpoint that
    only the project names (see :meth:`Endpoint.problem`), else say once per process where requests go."""
    saved = project.settings()
    env = settings_from_env()
    settings = merge_settings(saved, env, overrides)
    if settings.backend == "openai" if endpoint is None else endpoint:
        chosen = {*env, *(name for name, value in overrides.items() if value is not None)}
        target = Endpoint.of(saved, settings, chosen)
        problem = target.problem(allow_key_env=[allow_key_env] if allow_key_env else (), trust_endpoint=trust_endpoint)
        if problem:
            raise ConfigError(problem)
        if target.notice() not in STATE["announced"]:
            STATE["announced"].add(target.notice())
            err.print(target.notice(), highlight=False, markup=False, soft_wrap=True)
    return settings


def progress_bar(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[note]}"),
        console=err,
        disable=quiet,
        transient=False,
    )


def call_line(stats: CallCounts | None) -> str:
    if stats is None:
        return "LLM calls: none"
    return (
        f"LLM calls: {stats.calls} made, {stats.cached} cached, {stats.failed} failed; "
        f"tokens: {stats.prompt_tokens + stats.completion_tokens:,}"
    )


def llm_json(stats: RunStats | None) -> dict[str, Any]:
    """A command's ``"llm"`` entry in its --json output: the run's call stats (``{}`` without an LLM)."""
    return {} if stats is None else stats.to_json()


def emit(as_json: bool, data: Any, text: str) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        out.print(text, highlight=False)


def load_embedder(project: Any, spec: str | None) -> Any:
    from ..coverage.features.embeddings import make_embedder

    settings = resolve_settings(project, {}, endpoint=True) if spec and spec.startswith("openai:") else None
    return make_embedder(spec, settings=settings)


def load_gradient_featurizer(project: Any, proxy: str | None = None, max_tokens: int | None = None) -> Any:
    """The project's gradient featurizer (its saved proxy and cut, or these overrides), timing its
    runs in the project for later estimates."""
    try:
        from ..coverage.features.proxy import TimedFeaturizer, gradient_settings, load_gradients
    except ImportError as exc:
        raise TreeSynthError(f"gradient features are not available in this install ({exc})") from None
    return TimedFeaturizer(load_gradients(gradient_settings(project, proxy=proxy, max_tokens=max_tokens)), project)


def space_name(gradients: bool) -> str:
    """The feature space of a ``--gradients`` flag."""
    return "gradients" if gradients else "embeddings"


def no_featurizer(space: str) -> Any:
    """The run context's featurizer where a command loaded its own (or needs none)."""
    raise TreeSynthError(f"no {space} featurizer was loaded for this command")


def check_gradient_options(gradients: bool, proxy: str | None, max_tokens: int | None) -> None:
    """--proxy and --grad-max-tokens only make sense with gradient features."""
    if not gradients and (proxy is not None or max_tokens is not None):
        raise TreeSynthError("--proxy and --grad-max-tokens set the gradient features: add --gradients")


class CallbackBar:
    """A progress bar driven by ``(done, total, note)`` callbacks; shown on the first report (nothing to
    compute, no bar), or at once (``eager``, with ``total`` if known)."""

    def __init__(
        self,
        bar: Any,
        description: str,
        *,
        eager: bool = False,
        total: int | None = None,
        beat: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.bar, self.description, self.beat = bar, description, beat
        self.task: Any = bar.add_task(description, total=total, note="") if eager else None

    def __call__(self, done: int, total: int, note: str = "") -> None:
        if self.task is None:
            self.task = self.bar.add_task(self.description, total=None, note="")
        self.bar.update(self.task, completed=done, total=total or None, note=note[:60])
        if self.beat is not None:  # the run's progress, for the app and other processes to see
            self.beat(done, total, note)


def fmt_value(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def run_job(
    project: Any,
    kind: str,
    options: Any,
    params: dict[str, Any],
    settings: BackendSettings | None,
    llm_run: LlmRunOptions,
    as_json: bool,
    *,
    description: str,
    eager: bool = False,
    total: int | None = None,
    featurizer: Callable[[str], Any] = no_featurizer,
    **run_args: Any,
) -> tuple[Any, RunStats | None]:
    """Run the job ``kind``'s run function (``run(ctx, llm, options, **run_args)``) behind a progress bar
    (none with --quiet or --json; see :class:`CallbackBar`): as one logged LLM run, after saying so when
    the weak embedded model is in use, or without an LLM where ``settings`` is None (no call stats then: None).
    The run holds the project's run lease (:mod:`~treesynth_core.jobs.lease`): it refuses while another run
    works on the project, or waits for it with ``--wait``; its job records the kind's summary line as its
    outcome (what the app shows of it)."""
    from ..jobs.runs import run_llm_work
    from ..jobs.specs import JobContext, job_spec

    run = job_spec(kind).run

    concurrency = settings.concurrency if settings else JobContext.concurrency
    with lease(project, kind, params, llm_run.wait) as beat, progress_bar(llm_run.quiet or as_json) as bar:
        progress = CallbackBar(bar, description, eager=eager, total=total, beat=beat.report)

        async def work(llm: Any, cancel: threading.Event) -> Any:
            ctx = JobContext(project, featurizer, progress, cancel, concurrency)
            return await run(ctx, llm, options, **run_args)

        if settings is None:
            report, stats = asyncio.run(work(None, beat.cancel)), None
        else:
            if settings.backend == "embedded" and not as_json:
                err.print(EMBEDDED_NOTE, style="yellow", highlight=False)
            report, stats = run_llm_work(
                project,
                kind,
                params,
                settings,
                work,
                cancel=beat.cancel,
                max_calls=llm_run.max_calls,
                job_id=beat.job_id,
            )
        beat.result = job_spec(kind).summary(report, stats)  # the job's outcome, as the app shows it
        return report, stats


def lease(project: Any, kind: str, params: dict[str, Any], wait: bool) -> Any:
    """The project's run lease for a command (see :func:`run_job`), saying on stderr when it waits."""
    from ..jobs.lease import refusal, run_lease

    def waiting(holder: Any) -> None:
        err.print(f"waiting: {refusal(holder).split(';')[0]}", highlight=False, markup=False, soft_wrap=True)

    return run_lease(project, kind, params, wait=wait, on_wait=waiting)
