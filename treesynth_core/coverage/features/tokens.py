"""A sample as the gradient proxy sees it: token ids, which of them carry the loss, and the cut.

The prompt and response are formatted by the proxy's chat template as one user turn and one
assistant turn; the loss is masked up to the assistant's content, and the text is cut to
``max_tokens`` tokens (see :mod:`treesynth_core.coverage.features.gradients`).
"""

from __future__ import annotations

from typing import Any


def _render(tokenizer: Any, instruction: str, response: str) -> tuple[str, str]:
    """(prefix, full): the prompt up to the assistant's content, and the whole conversation."""
    user = [{"role": "user", "content": instruction}]
    if getattr(tokenizer, "chat_template", None):
        prefix = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template([*user, {"role": "assistant", "content": response}], tokenize=False)
        if isinstance(prefix, str) and isinstance(full, str) and full.startswith(prefix):
            return prefix, full
    else:
        prefix = instruction + "\n"
    return prefix, prefix + response + (tokenizer.eos_token or "")


def encode(tokenizer: Any, instruction: str, response: str | None, max_tokens: int) -> tuple[list[int], list[bool]]:
    """Token ids of one sample and which of them carry the loss (are predicted), cut to ``max_tokens``.

    With a response: the chat-formatted conversation; targets are the tokens from the assistant's
    content on (its end-of-turn tokens included). A long sample keeps at least ``max_tokens // 2``
    response tokens (fewer if the response is shorter), cutting the end of the prompt's content
    but keeping the template's assistant header next to the response. Without a response: the
    plain text, every token but the first a target.
    """
    if max_tokens < 2:
        raise ValueError("max_tokens must be at least 2 (0, no cut, is resolved by the featurizer)")
    if response is None:
        ids = list(tokenizer(instruction)["input_ids"])[:max_tokens]
        return ids, [i > 0 for i in range(len(ids))]
    prefix, full = _render(tokenizer, instruction, response)
    found = prefix.rfind(instruction)
    content_end = found + len(instruction) if found >= 0 else len(prefix)
    ids, p, header = _split_tokens(tokenizer, full, len(prefix), content_end)
    if len(ids) <= max_tokens:
        return ids, [i >= p for i in range(len(ids))]
    keep_r = min(len(ids) - p, max(max_tokens - p, max_tokens // 2))
    keep_p = max_tokens - keep_r
    tail = min(keep_p, header)
    prompt = ids[: keep_p - tail] + ids[p - tail : p]
    return prompt + ids[p : p + keep_r], [False] * len(prompt) + [True] * keep_r


def _split_tokens(tokenizer: Any, full: str, prefix_end: int, content_end: int) -> tuple[list[int], int, int]:
    """(ids of ``full``, index of the first response token, number of prompt tokens after the
    user's content: the template's assistant header)."""
    try:
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:  # a slow tokenizer has no offsets: tokenize the three parts apart
        parts = [full[:content_end], full[content_end:prefix_end], full[prefix_end:]]
        head, header, response = (list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in parts)
        return head + header + response, len(head) + len(header), len(header)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    p = next((i for i, (_, end) in enumerate(offsets) if end > prefix_end), len(ids))
    return ids, p, sum(1 for start, _ in offsets[:p] if start >= content_end)
