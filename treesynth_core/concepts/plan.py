"""What a concepts run would spend, said before it starts: calls, tokens and cost, checked against
the caps a person set."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..errors import BudgetError
from ..llm.pricing import cost, price_for
from ..llm.settings import BackendSettings


@dataclass(frozen=True)
class Spend:
    calls: int  # when every reply is usable
    calls_max: int  # with every re-ask and larger-budget retry
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    model: str

    @classmethod
    def priced(
        cls, calls: int, calls_max: int, tokens: tuple[int, int], model: str, settings: BackendSettings | None
    ) -> Spend:
        """``tokens`` (prompt, completion) priced for ``model`` (None: the price is unknown)."""
        price = price_for(model, settings)
        usd = None if price is None else cost(tokens[0], tokens[1], price)
        return cls(calls, calls_max, tokens[0], tokens[1], usd, model)

    def line(self) -> str:
        usd = "unknown price" if self.cost_usd is None else f"~${self.cost_usd:.2f}"
        tokens = self.prompt_tokens + self.completion_tokens
        return f"about {self.calls} calls (at most {self.calls_max}), ~{tokens:,} tokens, {usd} on {self.model}"

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "model"}

    def check(self, max_calls: int | None, max_cost: float | None) -> None:
        """A :class:`BudgetError` when the estimate passes a cap."""
        if max_calls is not None and self.calls > max_calls:
            raise BudgetError(
                f"this run needs about {self.calls} LLM calls, above your cap of {max_calls}; "
                "raise --max-calls or do less"
            )
        if max_cost is not None and self.cost_usd is not None and self.cost_usd > max_cost:
            raise BudgetError(f"this run is estimated at ${self.cost_usd:.2f}, above your cap of ${max_cost:.2f}")
