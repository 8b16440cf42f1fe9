"""Token prices and cost estimates. The embedded model is free; hosted models use a small default
table that a project can override (``treesynth settings DIR --price MODEL=IN,OUT``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .settings import BackendSettings

#: USD per million tokens (input, output) for well-known hosted models.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


def price_for(model: str, settings: BackendSettings | None) -> tuple[float, float] | None:
    """(input, output) USD per million tokens, or None when the price is unknown."""
    if settings is not None and settings.backend == "embedded":
        return (0.0, 0.0)
    prices = {**DEFAULT_PRICES, **(settings.prices if settings else {})}
    return prices.get(model)


def usd(amount: float) -> str:
    """A cost for people: cents for amounts from $0.10, four decimals below (small runs cost little)."""
    return f"${amount:.2f}" if amount >= 0.1 else f"${amount:.4f}"


#: The share of the online price a batch call costs, by backend: OpenAI's Batch API is half price.
BATCH_DISCOUNT: dict[str, float] = {"openai": 0.5}


def batch_price(model: str, settings: BackendSettings | None) -> tuple[float, float] | None:
    """(input, output) USD per million tokens of a call sent in a batch (``treesynth batch``): the
    online price times the backend's :data:`BATCH_DISCOUNT`; None when the price is unknown."""
    price = price_for(model, settings)
    if price is None:
        return None
    share = BATCH_DISCOUNT.get(settings.backend if settings is not None else "openai", 1.0)
    return (price[0] * share, price[1] * share)


def cost(prompt_tokens: int, completion_tokens: int, price: tuple[float, float]) -> float:
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


class Tokens(Protocol):
    """Token counts of some calls (the store's ``CallCounts``)."""

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def completion_tokens(self) -> int: ...


def spent(by_model: Mapping[str, Tokens], settings: BackendSettings | None) -> float | None:
    """Estimated USD spent on the calls in ``stats().by_model``; None if any model's price is
    unknown. Local models (embedded, or a price of 0 set by the user) cost nothing."""
    total = 0.0
    for model, counts in by_model.items():
        price = price_for(model, settings)
        if price is None:
            if counts.prompt_tokens or counts.completion_tokens:
                return None
            continue
        total += cost(counts.prompt_tokens, counts.completion_tokens, price)
    return total


def batch_saving(batch_tokens: Mapping[str, tuple[int, int]], settings: BackendSettings | None) -> float:
    """USD that calls sent in batches (``(prompt, completion)`` tokens by model) cost less than
    :func:`spent` counts them at the online price; models without a price save nothing."""
    saving = 0.0
    for model, (prompt, completion) in batch_tokens.items():
        full, batch = price_for(model, settings), batch_price(model, settings)
        if full is not None and batch is not None:
            saving += cost(prompt, completion, full) - cost(prompt, completion, batch)
    return saving


def parse_price(text: str) -> tuple[str, tuple[float, float]]:
    """``"gpt-4o-mini=0.15,0.60"`` -> ("gpt-4o-mini", (0.15, 0.6))."""
    from ..errors import ConfigError

    try:
        model, numbers = text.split("=", 1)
        prompt, completion = (float(x) for x in numbers.split(","))
    except ValueError:
        raise ConfigError(f"price {text!r} should look like MODEL=INPUT,OUTPUT in USD per million tokens") from None
    if prompt < 0 or completion < 0 or not model.strip():
        raise ConfigError(f"price {text!r}: give a model name and non-negative prices")
    return model.strip(), (prompt, completion)


def duration(seconds: float) -> str:
    """An estimated time in words: ``45 s``, ``12 min``, ``2.5 h``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
