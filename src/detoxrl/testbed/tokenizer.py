"""A small BPE tokenizer trained on the testbed corpus, wrapped for the tiny T5 and the tiny judge.

- Model: byte-pair encoding over characters, with a Metaspace pre-tokenizer (spaces become ``▁``,
  prepended only at the start of the text) and the matching decoder, so ``decode(encode(x)) == x``
  for any text made of known characters (all printable ASCII and newline are in the alphabet).
- Special tokens: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, ``<s>`` = 3, ``<mask>`` = 4.
- DialogSum's speaker markers ``#Person1#`` … ``#Person3#`` are added tokens (one id each).
- Two wrappers: the policy's (T5: ``x </s>``) and the judge's (RoBERTa: ``<s> x </s>``).
"""

from __future__ import annotations

import string
from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>", "<s>", "<mask>"]
PAD, EOS, UNK, BOS, MASK = range(5)
MARKERS = ["#Person1#", "#Person2#", "#Person3#"]
ALPHABET = sorted(set(string.printable) - set("\t\r\x0b\x0c ") | {"\n", "▁"})


def _strip_markers(text: str) -> str:
    for m in MARKERS:
        text = text.replace(m, " ")
    return text


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train the BPE model on ``texts`` (speaker markers are added afterwards as whole tokens)."""
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(MARKERS), special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=ALPHABET, min_frequency=2, show_progress=False)
    tk.train_from_iterator((_strip_markers(t) for t in texts), trainer=trainer)
    tk.add_tokens([AddedToken(m, single_word=False, normalized=False) for m in MARKERS])
    for i, tok in enumerate(SPECIAL_TOKENS):
        assert tk.token_to_id(tok) == i, f"special token {tok} must have id {i}"
    return tk


def _wrap(tk: Tokenizer, template: str, pair: str, model_max_length: int) -> PreTrainedTokenizerFast:
    tk = Tokenizer.from_str(tk.to_str())  # a copy: each wrapper gets its own post-processor
    tk.post_processor = processors.TemplateProcessing(
        single=template, pair=pair, special_tokens=[("<s>", BOS), ("</s>", EOS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", bos_token="<s>",
        mask_token="<mask>", model_max_length=model_max_length, clean_up_tokenization_spaces=False)


def policy_tokenizer(tk: Tokenizer, model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """T5-style: ``x </s>`` (no BOS), right padding with ``<pad>`` = 0."""
    return _wrap(tk, "$A </s>", "$A </s> $B </s>", model_max_length)


def judge_tokenizer(tk: Tokenizer, model_max_length: int = 128) -> PreTrainedTokenizerFast:
    """RoBERTa-style: ``<s> x </s>`` and ``<s> a </s> </s> b </s>``."""
    return _wrap(tk, "<s> $A </s>", "<s> $A </s> </s> $B </s>", model_max_length)
