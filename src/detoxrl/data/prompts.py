"""Turn examples into prompts: keep or drop by the text's characters, fill the template, then keep,
drop or truncate by token length.

An example whose text (before the template) has fewer than ``data.min_text_chars`` or more than
``data.max_text_chars`` characters is dropped first (the seed recipe filters DialogSum that way).
A prompt is ``data.prompt_template`` with ``{text}`` replaced by the example's text. Its length is
counted in the policy tokenizer's tokens *including* the special tokens the model sees (T5's ``</s>``).
Prompts shorter than ``min_prompt_tokens`` are dropped. Prompts longer than ``max_prompt_tokens`` are
dropped, or, with ``data.truncate``, the example text (never the instruction around it) is cut at a
token boundary so that the whole prompt fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detoxrl.config import DataSettings
from detoxrl.data.loaders import Example

_BATCH = 1024


@dataclass
class PromptExample:
    """An example with its filled-in prompt (``text`` is the possibly truncated example text)."""

    id: str
    prompt: str
    text: str
    references: list[str]
    meta: dict = field(default_factory=dict)


def fill_template(template: str, text: str) -> str:
    """``template`` with ``{text}`` replaced (plain replacement: other braces stay as they are)."""
    return template.replace("{text}", text)


def text_from_prompt(prompt: str, template: str) -> str | None:
    """Invert ``template`` (``...{text}...``): the text it was filled with, or None if it does not fit."""
    if "{text}" not in template:
        return None
    head, _, tail = template.partition("{text}")
    if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head) + len(tail):
        return prompt[len(head): len(prompt) - len(tail)]
    return None


def count_tokens(tokenizer, texts: list[str], add_special_tokens: bool = True) -> list[int]:
    """Token counts of ``texts``, tokenised in batches."""
    out: list[int] = []
    for i in range(0, len(texts), _BATCH):
        enc = tokenizer(texts[i : i + _BATCH], add_special_tokens=add_special_tokens)["input_ids"]
        out.extend(len(ids) for ids in enc)
    return out


def _cut_points(tokenizer, text: str) -> list[int]:
    """Character offsets at which ``text`` may be cut after k tokens (k = 1..n), no special tokens."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [end for _, end in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return [len(tokenizer.decode(ids[: k + 1], skip_special_tokens=True)) for k in range(len(ids))]


def truncate_to_fit(tokenizer, template: str, text: str, max_tokens: int) -> str | None:
    """The longest prefix of ``text`` (cut at a token boundary) whose prompt has ≤ ``max_tokens``.

    Returns ``None`` if not even one token of text fits beside the instruction.
    """
    cuts = _cut_points(tokenizer, text)
    overhead = count_tokens(tokenizer, [fill_template(template, "")])[0]
    k = min(len(cuts), max_tokens - overhead)
    while k > 0:
        cand = text[: cuts[k - 1]].rstrip()
        if cand and count_tokens(tokenizer, [fill_template(template, cand)])[0] <= max_tokens:
            return cand
        k -= 1  # merges across the cut can add a token; step back until it fits
    return None


def _char_filter(examples: list[Example], data: DataSettings, stats: dict[str, Any]) -> list[Example]:
    """The examples whose text has ``data.min_text_chars`` to ``data.max_text_chars`` characters."""
    lo, hi = data.min_text_chars, data.max_text_chars
    if lo is None and hi is None:
        return list(examples)
    kept = []
    for ex in examples:
        if lo is not None and len(ex.text) < lo:
            stats["too_few_chars"] += 1
        elif hi is not None and len(ex.text) > hi:
            stats["too_many_chars"] += 1
        else:
            kept.append(ex)
    return kept


def build_prompts(examples: list[Example], tokenizer, data: DataSettings) -> tuple[list[PromptExample], dict[str, Any]]:
    """Filter by the text's characters, fill the prompt template for every example left, and filter
    (or truncate) by token length.

    Returns the kept prompts, in input order, and counts: ``total, kept, too_few_chars, too_many_chars``
    (the character filter), ``too_short, too_long, truncated`` (the token filter) and the kept prompts'
    ``min/mean/max_tokens``.
    """
    template = data.prompt_template
    stats = {"total": len(examples), "kept": 0, "too_few_chars": 0, "too_many_chars": 0,
             "too_short": 0, "too_long": 0, "truncated": 0}
    examples = _char_filter(examples, data, stats)
    prompts = [fill_template(template, ex.text) for ex in examples]
    lengths = count_tokens(tokenizer, prompts)
    kept: list[PromptExample] = []
    kept_lengths: list[int] = []
    for ex, prompt, n in zip(examples, prompts, lengths):
        text = ex.text
        if n > data.max_prompt_tokens:
            cut = truncate_to_fit(tokenizer, template, text, data.max_prompt_tokens) if data.truncate else None
            if cut is None:
                stats["too_long"] += 1
                continue
            text, prompt = cut, fill_template(template, cut)
            n = count_tokens(tokenizer, [prompt])[0]
            stats["truncated"] += 1
        if n < data.min_prompt_tokens:
            stats["too_short"] += 1
            continue
        kept.append(PromptExample(ex.id, prompt, text, list(ex.references), dict(ex.meta)))
        kept_lengths.append(n)
    stats["kept"] = len(kept)
    if kept_lengths:
        stats.update(min_tokens=min(kept_lengths), mean_tokens=round(sum(kept_lengths) / len(kept_lengths), 2),
                     max_tokens=max(kept_lengths))
    return kept, stats


def describe_prompt_stats(stats: dict[str, Any], max_tokens: int, data: DataSettings | None = None) -> str | None:
    """One line on what the length filters did (``None`` when every prompt was kept whole); ``data``
    gives the character bounds to name."""
    keys = ("truncated", "too_long", "too_short", "too_few_chars", "too_many_chars")
    if not any(stats.get(k) for k in keys):
        return None
    parts = []
    if stats.get("too_few_chars"):
        bound = f" {data.min_text_chars}" if data is not None else ""
        parts.append(f"{stats['too_few_chars']} dropped as shorter than{bound} characters")
    if stats.get("too_many_chars"):
        bound = f" {data.max_text_chars}" if data is not None else ""
        parts.append(f"{stats['too_many_chars']} dropped as longer than{bound} characters")
    if stats["truncated"]:
        parts.append(f"{stats['truncated']} truncated to {max_tokens} tokens")
    if stats["too_long"]:
        parts.append(f"{stats['too_long']} dropped as longer than {max_tokens} tokens")
    if stats["too_short"]:
        parts.append(f"{stats['too_short']} dropped as too short")
    return f"prompts: kept {stats['kept']} of {stats['total']} ({', '.join(parts)})"
