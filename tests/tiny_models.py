"""Tiny models built offline for the gradient-feature tests: a byte-level tokenizer with ChatML
specials, a random 2-layer Llama and a random 2-layer GPT-2. Callers skip first when transformers is missing
(``pytest.importorskip("transformers")``); torch and transformers are imported on use."""

from __future__ import annotations

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer():
    """A byte-level tokenizer with ChatML specials, built offline (258 tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>")
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    fast.chat_template = CHATML
    return fast


def tiny_llama(vocab: int, *, tie: bool = True, seed: int = 0):
    """A random 2-layer Llama (hidden 32, 4 heads, 2 KV heads), its word embeddings tied unless ``tie``
    is False; the same ``seed`` gives the same weights."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tie,
    )
    return transformers.LlamaForCausalLM(config)


def tiny_gpt2(vocab: int, seed: int = 0):
    """A random 2-layer GPT-2 (Conv1D layers, LayerNorm with biases, learned positions; hidden 32,
    4 heads); the same ``seed`` gives the same weights."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=256,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=vocab - 1,
        eos_token_id=vocab - 1,
    )
    return transformers.GPT2LMHeadModel(config)
