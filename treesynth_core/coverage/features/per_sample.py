"""Exact per-sample gradients of the leaf modules the gradient features do not factor: norms, and
any other module with parameters that is not a linear layer or an embedding (see
:mod:`treesynth_core.coverage.features.gradients`).

A norm of the form y = w ⊙ x̂ (+ b) over the last axis, x̂ not depending on w or b, has them in
closed form: Σ_t δ_t ⊙ x̂_t for w and Σ_t δ_t for b (δ: the output gradient), a norm, a product and
a sum. Everything else goes through ``torch.func`` (``vmap`` of ``grad`` of the module's functional
call), which is exact for any module but re-enters Python and dispatches a few hundred small
operations each call: once per norm and batch it was the featurizer's largest cost on a
launch-bound GPU. The form is guessed from the module's type (:func:`norm_form`) and used only
after it has equalled ``torch.func`` on the module's first batch: a norm whose output is not
w ⊙ x̂ plus what does not depend on w (Gemma's (1 + w) ⊙ x̂ is) keeps ``torch.func``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


def norm_form(module: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """x -> x̂ (float32) for a norm of the form y = w ⊙ x̂ (+ b) over the last axis: ``nn.LayerNorm``
    and ``nn.RMSNorm`` of one axis, and an RMSNorm of the Llama family's (a class named ``...RMSNorm``
    holding only a 1-D weight, with an ``eps`` or ``variance_epsilon``); None for any other module.
    A guess from the module's type: :class:`LeafGradients` checks it before using it."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from torch import nn

    weight = getattr(module, "weight", None)
    own = {name for name, _ in module.named_parameters(recurse=False)}
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1 or not own <= {"weight", "bias"}:
        return None
    shape = tuple(getattr(module, "normalized_shape", ()))
    if isinstance(module, nn.LayerNorm) and len(shape) == 1:
        return lambda x: F.layer_norm(x, shape, None, None, module.eps)
    if isinstance(module, nn.RMSNorm) and len(shape) == 1 and own == {"weight"}:
        return lambda x: F.rms_norm(x, shape, None, module.eps)
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    if type(module).__name__.endswith("RMSNorm") and own == {"weight"} and isinstance(eps, float):
        return lambda x: F.rms_norm(x, (x.shape[-1],), None, eps)  # x * rsqrt(mean(x²) + eps), fused
    return None


class LeafGradients:
    """Per-sample gradients of a leaf module's own parameters from its batch-first input x and
    output gradient δ, both float32 with padded positions zeroed: ``{name: (B, *shape)}``.

    ``hooks_off`` is a context in which the module's forward hooks must do nothing (``torch.func``
    calls the module again). :attr:`closed_form` is None until the first call, then whether the
    closed form (:func:`norm_form`) is used: it is when it equalled ``torch.func``'s gradients on
    that call (relative error at most ``1e-4``), and that first call returns it too, so that every
    call of a featurizer computes the same way."""

    def __init__(self, module: nn.Module, hooks_off: Callable[[], AbstractContextManager[Any]]) -> None:
        from torch.func import functional_call, grad, vmap

        def inner(params: dict[str, Any], x: Any, delta: Any) -> Any:
            return (functional_call(module, params, (x.unsqueeze(0),)) * delta.unsqueeze(0)).sum()

        self.module = module
        self._per_sample = vmap(grad(inner), in_dims=(None, 0, 0))
        self._hooks_off = hooks_off
        self._normalize = norm_form(module)
        self.closed_form: bool | None = None if self._normalize is not None else False

    def __call__(self, x: torch.Tensor, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.closed_form is None:
            exact, closed = self.exact(x, delta), self.closed(x, delta)
            self.closed_form = exact.keys() == closed.keys() and all(
                closed[k].shape == g.shape and bool((closed[k] - g).norm() <= 1e-4 * g.norm() + 1e-12)
                for k, g in exact.items()
            )
            return closed if self.closed_form else exact
        return self.closed(x, delta) if self.closed_form else self.exact(x, delta)

    def exact(self, x: torch.Tensor, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Through ``torch.func``, in float32 (any module)."""
        import torch

        params = {k: p.detach() for k, p in self.module.named_parameters(recurse=False)}
        with self._hooks_off(), torch.autocast(x.device.type, enabled=False):
            grads: dict[str, torch.Tensor] = self._per_sample(params, x, delta)
        return grads

    def closed(self, x: torch.Tensor, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Σ_t δ_t ⊙ x̂_t (and Σ_t δ_t for a bias): only for a module with a :func:`norm_form`."""
        assert self._normalize is not None
        n, width = x.shape[0], x.shape[-1]
        grads = {"weight": (delta * self._normalize(x)).reshape(n, -1, width).sum(1)}
        if getattr(self.module, "bias", None) is not None:
            grads["bias"] = delta.reshape(n, -1, width).sum(1)
        return grads
