"""Tokenizers for the full-size stand-ins (:mod:`detoxrl.models.standin`): the same kind and the same
number of tokens as the real checkpoints' tokenizers, trained on whatever text is given (DialogSum's).

- T5 (``t5``): a Unigram model with ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, then the trained pieces,
  then the 100 sentinels ``<extra_id_99>`` … ``<extra_id_0>`` (32,100 tokens in all, as FLAN-T5's).
- RoBERTa (``roberta``): byte-level BPE with ``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2, ``<unk>`` = 3 and
  ``<mask>`` last (50,265 tokens).
- GPT-2 (``gpt2``): byte-level BPE with ``<|endoftext|>`` last (50,257 tokens).
- BERT (``bert``): lower-casing WordPiece with ``[PAD]`` = 0, ``[unused0..98]``, ``[UNK]`` = 100,
  ``[CLS]`` = 101, ``[SEP]`` = 102, ``[MASK]`` = 103 (30,522 tokens), as ``bert-base-uncased``.

A corpus as small as DialogSum's dev and test splits yields far fewer tokens than that (about 8,000
Unigram pieces, 14,000 BPE tokens, 12,000 WordPieces). The rest of the vocabulary is filled with
tokens no text produces (``<unused_N>``, or ``[unusedN]`` for BERT; Unigram fillers get the lowest
score), so that the tokenizer, the embedding matrix and every size that follows from them are the real
ones. Each tokenizer is built through its transformers class (``T5Tokenizer``, ``RobertaTokenizer``,
``GPT2Tokenizer``, ``BertTokenizer``), exactly as ``AutoTokenizer`` rebuilds it from the saved folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertTokenizer, GPT2Tokenizer, PreTrainedTokenizerBase, RobertaTokenizer, T5Tokenizer

T5_SPECIALS = ["<pad>", "</s>", "<unk>"]
T5_EXTRA_IDS = 100
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
GPT2_EOS = "<|endoftext|>"
BERT_UNUSED = 99  # [unused0] … [unused98] sit between [PAD] and [UNK] in bert-base-uncased
BERT_SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass
class TrainedTokenizer:
    """A stand-in tokenizer and how many of its tokens are fillers (tokens no text produces)."""

    tokenizer: PreTrainedTokenizerBase
    fillers: int


def _fillers(n: int, taken: set[str]) -> list[str]:
    """``n`` filler tokens ``<unused_N>`` not among ``taken``."""
    out, i = [], 0
    while len(out) < n:
        tok = f"<unused_{i}>"
        if tok not in taken:
            out.append(tok)
        i += 1
    return out


def _trained_json(tk: Tokenizer, texts: Sequence[str], trainer) -> dict:
    tk.train_from_iterator(texts, trainer=trainer)
    return json.loads(tk.to_str())["model"]


def unigram_pieces(texts: Sequence[str], n_pieces: int) -> tuple[list[tuple[str, float]], int]:
    """``n_pieces`` Unigram pieces (the T5 specials first, as trained, then fillers) and the filler count."""
    tk = Tokenizer(models.Unigram())
    tk.pre_tokenizer = pre_tokenizers.Sequence([  # T5Tokenizer's own pre-tokenizer
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)])
    trainer = trainers.UnigramTrainer(vocab_size=n_pieces, special_tokens=T5_SPECIALS, unk_token="<unk>",
                                      show_progress=False)
    pieces = [(str(p), float(s)) for p, s in _trained_json(tk, texts, trainer)["vocab"]][:n_pieces]
    assert [p for p, _ in pieces[:3]] == T5_SPECIALS, pieces[:3]
    low = min(s for _, s in pieces[3:]) - 10.0
    extra = _fillers(n_pieces - len(pieces), {p for p, _ in pieces})
    return pieces + [(tok, low) for tok in extra], len(extra)


def t5_tokenizer(texts: Sequence[str], size: int = 32_100, model_max_length: int = 512) -> TrainedTokenizer:
    """FLAN-T5's kind: ``size`` tokens, the last 100 of them the sentinels ``<extra_id_N>``."""
    pieces, fillers = unigram_pieces(texts, size - T5_EXTRA_IDS)
    sentinels = [(f"<extra_id_{i}>", 0.0) for i in range(T5_EXTRA_IDS - 1, -1, -1)]
    tok = T5Tokenizer(vocab=pieces + sentinels, extra_ids=T5_EXTRA_IDS, model_max_length=model_max_length)
    return TrainedTokenizer(tok, fillers)


def byte_bpe(texts: Sequence[str], n_tokens: int, specials: list[str]) -> tuple[dict[str, int], list, int]:
    """A byte-level BPE vocabulary of exactly ``n_tokens`` (``specials`` first), its merges and the
    number of fillers appended."""
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=n_tokens, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    model = _trained_json(tk, texts, trainer)
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    ordered = list(vocab)[:n_tokens]
    extra = _fillers(n_tokens - len(ordered), set(ordered))
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    kept = set(ordered)
    merges = [m for m in merges if m[0] in kept and m[1] in kept and m[0] + m[1] in kept]
    return {t: i for i, t in enumerate(ordered + extra)}, merges, len(extra)


def roberta_tokenizer(texts: Sequence[str], size: int = 50_265, model_max_length: int = 512) -> TrainedTokenizer:
    """RoBERTa's kind: ``<s> <pad> </s> <unk>`` first, ``<mask>`` last, ``size`` tokens in all."""
    vocab, merges, fillers = byte_bpe(texts, size - 1, ROBERTA_SPECIALS)
    vocab["<mask>"] = size - 1
    tok = RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
    return TrainedTokenizer(tok, fillers)


def gpt2_tokenizer(texts: Sequence[str], size: int = 50_257, model_max_length: int = 1024) -> TrainedTokenizer:
    """GPT-2's kind: ``size`` tokens, ``<|endoftext|>`` (BOS, EOS and unknown) the last."""
    vocab, merges, fillers = byte_bpe(texts, size - 1, [])
    vocab[GPT2_EOS] = size - 1
    tok = GPT2Tokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
    return TrainedTokenizer(tok, fillers)


def bert_tokenizer(texts: Sequence[str], size: int = 30_522, model_max_length: int = 512) -> TrainedTokenizer:
    """``bert-base-uncased``'s kind: lower-casing WordPiece, its special tokens at their usual ids."""
    head = ["[PAD]"] + [f"[unused{i}]" for i in range(BERT_UNUSED)] + BERT_SPECIALS
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)  # BertTokenizer's own (do_lower_case)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=size - BERT_UNUSED, special_tokens=["[PAD]"] + BERT_SPECIALS,
                                        show_progress=False)
    trained = sorted(_trained_json(tk, texts, trainer)["vocab"].items(), key=lambda kv: kv[1])
    body = [t for t, _ in trained if t not in set(head)][: size - len(head)]
    # bert-base-uncased's own fillers: [unused99] on (the pre-tokenizer splits "[", so no text makes them)
    extra = [f"[unused{BERT_UNUSED + i}]" for i in range(size - len(head) - len(body))]
    vocab = {t: i for i, t in enumerate(head + body + extra)}
    tok = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=model_max_length)
    return TrainedTokenizer(tok, len(extra))


TOKENIZERS = {"t5": t5_tokenizer, "roberta": roberta_tokenizer, "gpt2": gpt2_tokenizer, "bert": bert_tokenizer}
"""Tokenizer builders by kind: ``builder(texts, size, model_max_length)``."""
