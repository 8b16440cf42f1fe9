"""G-Vendi gradient features: a proxy LM's per-sample loss gradient, randomly projected.

Prismatic Synthesis (Jung et al., arXiv 2505.20161) measures diversity as the Vendi score of the
per-sample gradients a small instruction-tuned proxy model produces; see
``shared/research/prismatic_synthllm.md`` (section A). Each sample's feature is

    g_i = d/dθ mean CE(response tokens | prompt)      (the whole text when there is no response)
    f_i = R g_i / ||R g_i||                           (R: a seeded d x |θ| random projection)

over **all** parameters of the proxy (tied embeddings once), with the prompt and response formatted
by the proxy's chat template as one user turn and one assistant turn, the loss masked up to the
assistant's content, and the text cut to ``max_tokens`` tokens (0: no cut but the proxy's context
length, as the paper; the default keeps most of a chain-of-thought response: see
``benchmarks/gradient_lengths.py``).

The proxy is the embedded SmolLM2-135M-Instruct by default; the paper's is Qwen2.5-0.5B-Instruct.
Any local causal-LM checkpoint folder or GGUF file can be used: :mod:`.proxy_model` names, checks and
loads it; :mod:`.tokens` turns a sample into the proxy's tokens and loss mask.

How the projection is computed (chosen by measurement: see ``benchmarks/gradients.py``)
-------------------------------------------------------------------------------------
No full gradient is ever formed, per sample or otherwise, and no |θ| x d matrix exists. R is
block-structured, one block per parameter, each with its own seeded factors:

* a weight matrix W (rows x cols; linear layers, embeddings, GPT-2's Conv1D) projects its gradient
  G to vec(Aᵀ G B), with Gaussian factors A (rows x k_r) and B (cols x k_c), k_r·k_c = d (32 x 32
  for d = 1024): the Kronecker-factored projection of LoGra (Choe et al. 2024). A linear layer's
  per-sample gradient is G = Σ_t δ_t a_tᵀ (output gradients δ, inputs a, summed over tokens t),
  so Aᵀ G B = Σ_t (Aᵀ δ_t)(Bᵀ a_t)ᵀ: two skinny matmuls per layer, fed by a forward hook (a) and
  a tensor hook on the layer's output (δ) during one batched backward pass that computes no weight
  gradient at all. The projected (Bᵀ a_t, Aᵀ δ_t) of all layers are kept and summed at the end of
  the batch in one batched (k_r x k_c) product over all layers' tokens. Embedding rows are one-hot:
  Aᵀ e_x = A[x].
* every other parameter (norm weights, biases) gets its exact per-sample gradient (a norm's in
  closed form, checked once against ``torch.func``: :mod:`.per_sample`) and a seeded count sketch
  (:mod:`.sketches`), all of them applied at the end of the batch by one gather and one sum.

A batch adds to the model's own forward and backward two small matmuls per linear layer and a few
operations per norm, and nothing in it waits for the device until its features are copied back.
That matters on a GPU, where a 135M-parameter proxy is bound by launching kernels up to a batch of
about 32 (its time per batch barely grows with the batch): every operation on the host costs wall
time there (``benchmarks/gradients.py --profile`` shows where it goes).

The blocks are summed, so R is one random linear map with E[RᵀR] = I over the concatenated
gradient: inner products, hence cosines, are preserved in expectation. On SmolLM2-135M at 128
tokens (2 CPU cores): 0.58 s a sample, 0.73x a plain forward+backward of the same batch (no weight
gradient is computed) and ~200x faster than a full gradient plus a dense projection; cosines have
Pearson 0.989 with the exact full-gradient cosines (64 samples, 2016 pairs). On 24 samples the
factored projection (0.981) was as faithful as a count sketch of the whole flat gradient (0.985)
and a TensorSketch of the same blocks (0.980), and 25x cheaper to apply than the TensorSketch.

Batches and precision
---------------------
Samples are batched by length (:func:`length_batches`: longest first, so a batch pads little) and
the features come back in the caller's order; batching and padding do not change them (to float
error). ``dtype="bf16"`` runs the proxy's forward under ``torch.autocast`` in bfloat16 (the backward
follows it); the weights stay float32, and so does whatever is numerically fragile: the loss (cross-
entropy of float32 logits), the exact per-sample gradients of norms and biases, and every sum of the
projection. The skinny projections of activations and output gradients run in bf16 (their factors
cast once, an input shared by several layers cast once), their products converted to float32
before they are summed over tokens. ``auto`` (the default)
is bf16 on a CUDA GPU that supports it and fp32 elsewhere; ``benchmarks/gradients.py --dtype both``
measures the speed and how far bf16 features are from fp32 ones.

Same seed, same machine, same batch: bitwise-identical features. Vectors made with a different
model, ``dim``, ``seed``, ``max_tokens`` or precision never mix: :attr:`GradientFeaturizer.name`
says which.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...seeding import stable_seed
from .per_sample import LeafGradients
from .proxy_model import DEFAULT_DIM, DEFAULT_MAX_TOKENS, feature_kind, load_proxy, resolve_dtype
from .sketches import CountSketch, factor_dims, gaussian
from .tokens import encode

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ...store.samples import Sample  # not at run time: the store needs the app's dependencies

Progress = Callable[[int, int], None]


# -- the featurizer -------------------------------------------------------------------------------


class GradientFeaturizer:
    """Per-sample proxy-model gradients, projected to ``dim`` dimensions and L2-normalized.

    ``model`` None: SmolLM2-135M-Instruct from the embedded LLM's GGUF. Otherwise a local Hugging
    Face model folder, a ``.gguf`` file, or a model name already in the local Hugging Face cache
    (nothing is downloaded). Runs on the GPU when there is one; ``dtype`` ``auto`` runs the proxy in
    bf16 there and in float32 on the CPU (``fp32`` or ``bf16`` choose; see the module's notes).
    ``features`` calls on one featurizer run one at a time (a lock).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        dim: int = DEFAULT_DIM,
        seed: int = 0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        device: str | None = None,
        dtype: str = "auto",
    ) -> None:
        resolve_dtype(dtype, device)  # a bad dtype fails before the model loads
        lm, tokenizer, label = load_proxy(model)
        self._setup(lm, tokenizer, label, dim=dim, seed=seed, max_tokens=max_tokens, device=device, dtype=dtype)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        tokenizer: Any,
        *,
        label: str,
        dim: int = DEFAULT_DIM,
        seed: int = 0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        device: str | None = None,
        dtype: str = "auto",
    ) -> GradientFeaturizer:
        """Wrap a causal LM already in memory. The featurizer takes it over (eval mode, float32,
        parameters frozen, hooks added); ``label`` names it in :attr:`name`."""
        self = cls.__new__(cls)
        self._setup(model, tokenizer, label, dim=dim, seed=seed, max_tokens=max_tokens, device=device, dtype=dtype)
        return self

    def _setup(
        self,
        model: nn.Module,
        tokenizer: Any,
        label: str,
        *,
        dim: int,
        seed: int,
        max_tokens: int,
        device: str | None,
        dtype: str,
    ) -> None:
        import torch

        if dim < 2:
            raise ValueError("dim must be at least 2")
        if max_tokens != 0 and max_tokens < 2:
            raise ValueError("max_tokens must be 0 (no cut) or at least 2")
        self.dim, self.seed, self.max_tokens, self.label = dim, seed, max_tokens, label
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        #: ``fp32`` or ``bf16``: the precision of the proxy's forward and backward.
        self.dtype = resolve_dtype(dtype, str(self.device))
        self._low = torch.bfloat16 if self.dtype == "bf16" else None  # the autocast dtype, None: float32
        self._low_factors: dict[int, torch.Tensor] = {}  # id(fp32 factor) -> its bf16 copy
        self._low_input: tuple[torch.Tensor, torch.Tensor] | None = None  # the last input cast to bf16, its copy
        self.model = model.to(device=self.device, dtype=torch.float32).eval()
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = int(pad or 0)
        self._accepts_positions = "position_ids" in _forward_params(model)
        self._names = {id(p): n for n, p in model.named_parameters()}  # tied weights: one name
        for p in model.parameters():
            p.requires_grad_(False)
        self._factors = factor_dims(dim)
        self._matrices: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._flat: dict[str, CountSketch] = {}
        self._hooks: list[Any] = []
        self._active = False
        self._lock = threading.Lock()
        self._mask: torch.Tensor | None = None  # (B, T) bool, None when the batch has no padding
        self._n = 0  # the batch's size while a batch runs, else 0
        # The batch's projected factors, summed at its end (one matmul): (B, N, k_r) and (B, N, k_c)
        # pairs by dtype, and the per-sample gradients (B, n) of the count-sketched parameters.
        self._blocks: dict[torch.dtype, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self._flat_grads: list[tuple[str, torch.Tensor]] = []
        self._summed_sketches: dict[tuple[str, ...], CountSketch] = {}
        self._plan_hooks()

    @property
    def name(self) -> str:
        """The feature store kind: vectors of different models or settings never mix."""
        return feature_kind(self.label, self.dim, self.seed, self.max_tokens, self.dtype)

    @property
    def cut(self) -> int:
        """The tokens a sample is cut to: ``max_tokens``, or with 0 the proxy's context length."""
        if self.max_tokens:
            return self.max_tokens
        config = getattr(self.model, "config", None)
        context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        return int(context) if context else 1 << 20

    def __repr__(self) -> str:
        return f"GradientFeaturizer({self.name!r}, device={self.device.type!r}, dtype={self.dtype!r})"

    # -- the seeded projection ------------------------------------------------------------------
    def matrix_factors(self, param: str, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) of weight matrix ``param``: (rows x k_r) and (cols x k_c), on the device."""
        if param not in self._matrices:
            (rows, cols), (kr, kc) = shape, self._factors
            a = gaussian((rows, kr), stable_seed("grad-proj", self.seed, self.dim, param, "rows"), kr**-0.5)
            b = gaussian((cols, kc), stable_seed("grad-proj", self.seed, self.dim, param, "cols"), kc**-0.5)
            self._matrices[param] = (a.to(self.device), b.to(self.device))
        return self._matrices[param]

    def flat_sketch(self, param: str, n: int) -> CountSketch:
        """The count sketch of a parameter without matrix structure (``n`` numbers)."""
        if param not in self._flat:
            seed = stable_seed("grad-proj", self.seed, self.dim, param, "flat")
            self._flat[param] = CountSketch(n, self.dim, seed, self.device)
        return self._flat[param]

    def project(self, grads: Mapping[str, Any]) -> np.ndarray:
        """The projection (unnormalized, float64) of one explicit gradient given per parameter
        name: the slow reference the hooks must match, for tests and the fidelity check."""
        out = np.zeros(self.dim)
        for name, g in grads.items():
            g = np.asarray(g.detach().cpu() if hasattr(g, "detach") else g, dtype=np.float64)
            if name in self._matrices:
                a, b = (f.double().cpu().numpy() for f in self._matrices[name])
                out += (a.T @ g @ b).ravel()
            else:
                sketch = self.flat_sketch(name, g.size)
                out += np.bincount(sketch.bucket, weights=sketch.sign * g.ravel(), minlength=self.dim)
        return out

    # -- hooks ----------------------------------------------------------------------------------
    def _plan_hooks(self) -> None:
        from torch import nn

        covered: set[int] = set()
        for module_name, module in self.model.named_modules():
            own = dict(module.named_parameters(recurse=False))
            if not own:
                continue
            if isinstance(module, nn.Linear) or _is_conv1d(module):
                hook = self._linear_hook(module, transposed=_is_conv1d(module))
            elif isinstance(module, nn.Embedding):
                hook = self._embedding_hook(module)
            elif not list(module.children()):
                hook = self._generic_hook(module)
            else:
                raise NotImplementedError(
                    f"gradient features: module {module_name} ({type(module).__name__}) holds parameters "
                    "and has submodules; only leaf modules are supported"
                )
            self._hooks.append(module.register_forward_hook(hook))
            covered.update(id(p) for p in own.values())
        missing = [n for n, p in self.model.named_parameters() if id(p) not in covered]
        if missing:  # pragma: no cover - every parameter sits in some module
            raise NotImplementedError(f"gradient features: parameters outside any module: {missing[:5]}")

    def _tokens(self, t: torch.Tensor) -> torch.Tensor:
        """A batch-first activation as (B, N, features), N = tokens (and heads, if any)."""
        if not self._n or t.shape[0] != self._n:
            raise NotImplementedError("gradient features need batch-first activations")
        return t.reshape(t.shape[0], -1, t.shape[-1])

    def _project(self, t: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        """``t @ factor`` (a skinny projection): in bf16 mode computed in bf16 and left in bf16 (the
        batch's sum is float32), with a bf16 copy of the factor made once."""
        if self._low is None:
            return t @ factor
        low = self._low_factors.get(id(factor))
        if low is None:
            low = self._low_factors[id(factor)] = factor.to(self._low)
        return t.to(self._low) @ low

    def _layer_input(self, x: torch.Tensor) -> torch.Tensor:
        """A layer's input, detached, in the projection's dtype: in bf16 mode one bf16 copy of an
        input that several layers share (q, k and v; gate and up)."""
        if self._low is None or x.dtype == self._low:
            return x.detach()
        if self._low_input is None or self._low_input[0] is not x:
            self._low_input = (x, x.detach().to(self._low))
        return self._low_input[1]

    def _add_block(self, rows: torch.Tensor, cols: torch.Tensor) -> None:
        """Keep projected (B, N, k_r) and (B, N, k_c) for the batch's sum Σ_t rows[b, t] ⊗ cols[b, t]
        (:meth:`_blocks_sum`)."""
        if rows.dtype != cols.dtype:
            rows, cols = rows.float(), cols.float()
        kept = self._blocks.setdefault(rows.dtype, ([], []))
        kept[0].append(rows)
        kept[1].append(cols)

    def _blocks_sum(self, acc: torch.Tensor) -> None:
        """acc[b] += Σ over the kept blocks and their tokens of rows[b, t] ⊗ cols[b, t]: one batched
        float32 matmul over all of them (padded positions zeroed)."""
        import torch

        mask = self._mask
        for rows, cols in self._blocks.values():
            r, c = torch.cat(rows, dim=1), torch.cat(cols, dim=1)
            if mask is not None:  # pads get no gradient anyway: this keeps odd activations there out
                keep = [mask if p.shape[1] == mask.shape[1] else mask.new_ones(p.shape[:2]) for p in rows]
                m = torch.cat(keep, dim=1).unsqueeze(-1)
                r, c = r.where(m, 0.0), c.where(m, 0.0)
            acc.baddbmm_(r.float().transpose(1, 2), c.float())

    def _add_flat(self, name: str, grads: torch.Tensor) -> None:
        """Keep per-sample gradients (B, ...) of parameter ``name`` for the batch's count sketch."""
        self._flat_grads.append((name, grads.reshape(grads.shape[0], -1).float()))

    def _flat_sum(self, acc: torch.Tensor) -> None:
        """acc += the count sketches of the kept per-sample gradients: one gather and one sum (their
        sketches side by side, :meth:`CountSketch.summed`)."""
        import torch

        if not self._flat_grads:
            return
        names = tuple(name for name, _ in self._flat_grads)
        sketch = self._summed_sketches.get(names)
        if sketch is None:
            parts = [self.flat_sketch(name, g.shape[1]) for name, g in self._flat_grads]
            sketch = self._summed_sketches[names] = CountSketch.summed(parts)
        acc += sketch(torch.cat([g for _, g in self._flat_grads], dim=1))

    def _linear_hook(self, module: nn.Module, *, transposed: bool) -> Callable[..., None]:
        weight: Any = module.weight
        a_out, b_in = self.matrix_factors(self._names[id(weight)], (weight.shape[0], weight.shape[1]))
        if transposed:  # Conv1D: weight (in, out)
            a_out, b_in = b_in, a_out
        bias = getattr(module, "bias", None)

        def forward_hook(_module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            if not self._active or not output.requires_grad:
                return
            x_in = self._project(self._tokens(self._layer_input(args[0])), b_in)  # kept: (B, N, k), not x

            def on_grad(delta: torch.Tensor) -> None:
                d = self._tokens(delta)
                d_out = self._project(d, a_out)
                self._add_block(x_in if transposed else d_out, d_out if transposed else x_in)
                if bias is not None:
                    self._add_flat(self._names[id(bias)], self._masked_sum(d))

            output.register_hook(on_grad)

        return forward_hook

    def _embedding_hook(self, module: nn.Module) -> Callable[..., Any]:
        weight: Any = module.weight
        a_rows, b_cols = self.matrix_factors(self._names[id(weight)], (weight.shape[0], weight.shape[1]))

        def forward_hook(_module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> Any:
            if not self._active:
                return None
            if not output.requires_grad:  # the first layer: the backward pass starts here
                output = output.detach().requires_grad_(True)
            g_ids = self._tokens(args[0].unsqueeze(-1)).squeeze(-1)
            rows = a_rows[g_ids]  # Aᵀ e_x = A[x]

            def on_grad(delta: torch.Tensor) -> None:
                self._add_block(rows, self._project(self._tokens(delta), b_cols))

            output.register_hook(on_grad)
            return output

        return forward_hook

    def _masked_sum(self, t: torch.Tensor) -> torch.Tensor:
        """(B, F) float32: Σ over tokens of a batch-first (B, T, ..., F) tensor, padded positions
        zeroed (a bias's per-sample gradient from its output gradient)."""
        return self._tokens(self._pads_zeroed(t.float())).sum(1)

    def _pads_zeroed(self, t: torch.Tensor) -> torch.Tensor:
        """A batch-first (B, T, ...) tensor with its padded positions zeroed (itself without padding)."""
        mask = self._mask
        if mask is None or t.shape[:2] != mask.shape:
            return t
        return t.where(mask.view(*mask.shape, *([1] * (t.dim() - 2))), 0.0)

    @contextmanager
    def _hooks_off(self) -> Iterator[None]:
        """Our forward hooks do nothing inside (``torch.func`` calling a module again)."""
        self._active = False
        try:
            yield
        finally:
            self._active = True

    def _generic_hook(self, module: nn.Module) -> Callable[..., None]:
        """Any other leaf module with parameters (norms, ...): exact per-sample gradients
        (:class:`~.per_sample.LeafGradients`: a norm's in closed form), then a count sketch.
        Expects one batch-first tensor input."""
        names = {k: self._names[id(p)] for k, p in module.named_parameters(recurse=False)}
        leaf = LeafGradients(module, self._hooks_off)

        def forward_hook(_module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
            if not self._active or not output.requires_grad:
                return
            if len(args) != 1:
                raise NotImplementedError(f"gradient features: {type(module).__name__} takes {len(args)} inputs")
            x = args[0].detach()

            def on_grad(delta: torch.Tensor) -> None:
                grads = leaf(self._pads_zeroed(x.float()), self._pads_zeroed(delta.float()))
                for key, g in grads.items():
                    self._add_flat(names[key], g)

            output.register_hook(on_grad)

        return forward_hook

    # -- features -------------------------------------------------------------------------------
    def features(
        self, samples: Sequence[Sample], *, batch_size: int = 8, progress: Progress | None = None
    ) -> np.ndarray:
        """(n, dim) float32 features, rows L2-normalized (an all-zero row for a sample with no
        token to predict). The response carries the loss when a sample has one."""
        pairs = [(s.instruction, s.response) for s in samples]
        return self.features_for_texts(pairs, batch_size=batch_size, progress=progress)

    def features_for_texts(
        self, pairs: Sequence[tuple[str, str | None]], *, batch_size: int = 8, progress: Progress | None = None
    ) -> np.ndarray:
        """Like :meth:`features`, for (instruction, response or None) pairs."""
        cut = self.cut
        encoded = [encode(self.tokenizer, text, response, cut) for text, response in pairs]
        out = np.zeros((len(encoded), self.dim), dtype=np.float32)
        done = 0
        with self._lock:  # one process-wide featurizer may serve several jobs' threads
            for chunk in length_batches([len(ids) for ids, _ in encoded], batch_size):
                out[chunk] = self._batch([encoded[i] for i in chunk])  # back in the caller's order
                done += len(chunk)
                if progress:
                    progress(done, len(encoded))
        return out

    def _batch(self, encoded: Sequence[tuple[list[int], list[bool]]]) -> np.ndarray:
        import torch
        import torch.nn.functional as F  # noqa: N812

        n, width = len(encoded), max(1, max(len(ids) for ids, _ in encoded))
        ids_np = np.full((n, width), self._pad_id, dtype=np.int64)
        mask_np = np.zeros((n, width), dtype=bool)
        target_np = np.zeros((n, width), dtype=bool)
        for i, (row, targets) in enumerate(encoded):
            ids_np[i, : len(row)], mask_np[i, : len(row)], target_np[i, : len(row)] = row, True, targets
        ids, mask, target = (torch.from_numpy(a).to(self.device) for a in (ids_np, mask_np, target_np))
        self._mask = None if mask_np.all() else mask  # decided on the host: no wait for the device
        vectors = torch.zeros((n, self.dim), device=self.device)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask.long(), "use_cache": False}
        if self._accepts_positions:
            kwargs["position_ids"] = torch.arange(width, device=self.device).expand(n, width)
        self._active, self._n = True, n
        try:
            with torch.enable_grad():
                with self.precision():
                    logits = self.model(**kwargs).logits
                    loss = _per_sample_mean_ce(F, logits, ids, target).sum()  # float32 (logits cast)
                del logits
                if loss.requires_grad:
                    loss.backward()  # outside autocast: each op's backward runs in its forward's dtype
            self._blocks_sum(vectors.view(n, *self._factors))
            self._flat_sum(vectors)
        finally:
            self._active, self._n, self._mask, self._low_input = False, 0, None, None
            self._blocks, self._flat_grads = {}, []
        norms = vectors.norm(dim=1, keepdim=True)
        vectors = torch.where(norms > 0, vectors / norms.clamp_min(1e-30), torch.zeros_like(vectors))
        return vectors.detach().cpu().numpy().astype(np.float32)

    def precision(self) -> AbstractContextManager[Any]:
        """The context the proxy's forward runs in: bf16 autocast in bf16 mode, else none (float32)."""
        import torch

        return torch.autocast(self.device.type, dtype=self._low) if self._low is not None else nullcontext()

    def close(self) -> None:
        """Remove the hooks (the model stays usable as a plain model)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of indices into ``lengths`` (token counts) by length: longest first, ties in index
    order, ``batch_size`` a batch (at least 1), so a batch's samples are of similar length and pad
    little. Deterministic; every index once."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # a stable sort: ties keep index order
    step = max(1, batch_size)
    return [order[start : start + step] for start in range(0, len(order), step)]


def _is_conv1d(module: Any) -> bool:
    """transformers' Conv1D (GPT-2 and relatives): a linear layer with its weight stored (in, out)."""
    return type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None


def _per_sample_mean_ce(F: Any, logits: torch.Tensor, ids: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: N803
    """(B,) mean next-token cross-entropy over each sample's target tokens (0 when it has none)."""
    n, width, vocab = logits.shape
    if width < 2:
        return logits.sum(dim=(1, 2)) * 0.0
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(), ids[:, 1:].reshape(-1), reduction="none")
    weights = target[:, 1:].float()
    return (ce.view(n, width - 1) * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def _forward_params(model: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        return set()


# -- one featurizer per proxy setting ---------------------------------------------------------------


_loaded: dict[tuple[str | None, int, str], GradientFeaturizer] = {}
_loaded_lock = threading.Lock()
#: Featurizers kept loaded per process (each holds its own copy of the proxy's weights).
KEEP_LOADED = 2


def load_featurizer(
    proxy: str | None = None, max_tokens: int = DEFAULT_MAX_TOKENS, dtype: str = "auto"
) -> GradientFeaturizer:
    """The featurizer of a proxy setting (None: the embedded SmolLM2-135M) at a token cut and
    precision (``auto``: bf16 on a CUDA GPU, else fp32), loaded once per process; the
    :data:`KEEP_LOADED` most recently used stay in memory."""
    key = (
        str(Path(proxy).expanduser().resolve()) if proxy and Path(proxy).expanduser().exists() else proxy,
        max_tokens,
        resolve_dtype(dtype),
    )
    with _loaded_lock:
        if key in _loaded:
            _loaded[key] = _loaded.pop(key)  # most recent last
            return _loaded[key]
        featurizer = GradientFeaturizer(proxy, max_tokens=max_tokens, dtype=key[2])
        _loaded[key] = featurizer
        while len(_loaded) > KEEP_LOADED:
            _loaded.pop(next(iter(_loaded)))
        return featurizer


def default_featurizer() -> GradientFeaturizer:
    """The embedded proxy (SmolLM2-135M-Instruct) at the default cut, loaded once per process."""
    return load_featurizer(None, DEFAULT_MAX_TOKENS)


def gradient_features_for_texts(
    instructions: Sequence[str],
    responses: Sequence[str | None] | None = None,
    *,
    featurizer: GradientFeaturizer | None = None,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> np.ndarray:
    """Gradient features of plain texts (with optional responses) on ``featurizer`` (default: the
    embedded proxy)."""
    if responses is not None and len(responses) != len(instructions):
        raise ValueError("instructions and responses differ in length")
    pairs = list(zip(instructions, responses if responses is not None else [None] * len(instructions), strict=True))
    return (featurizer or default_featurizer()).features_for_texts(pairs, batch_size=batch_size, progress=progress)
