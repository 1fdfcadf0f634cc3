"""Tiny random models of the real architectures, saved to a folder and loaded back exactly as a hub
model would be: for examples, notebooks and tests that must run offline in seconds.

Their outputs are meaningless; they exercise the code path. The vocabulary is ``w0 … w59`` plus the
special tokens, one word per token.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

VOCAB = ["<pad>", "</s>", "<unk>", "<s>"] + [f"w{i}" for i in range(60)]


def word_tokenizer(append_eos: bool) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over :data:`VOCAB` (``</s>`` appended to every text if asked)."""
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if append_eos:
        tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", bos_token="<s>")


def _folder(path: str | Path | None, prefix: str) -> Path:
    d = Path(path) if path is not None else Path(tempfile.mkdtemp(prefix=prefix))
    d.mkdir(parents=True, exist_ok=True)
    return d


def tiny_t5(path: str | Path | None = None, seed: int = 0) -> str:
    """Save a 2+2-layer T5 (d_model 32) and its tokenizer to ``path`` (default: a new temporary folder)."""
    torch.manual_seed(seed)
    d = _folder(path, "tiny-t5-")
    cfg = T5Config(vocab_size=len(VOCAB), d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=2, d_kv=16, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                   dropout_rate=0.1)
    T5ForConditionalGeneration(cfg).save_pretrained(d)
    word_tokenizer(append_eos=True).save_pretrained(d)
    return str(d)


def tiny_gpt2(path: str | Path | None = None, seed: int = 0) -> str:
    """Save a 2-layer GPT-2 (n_embd 32) and its tokenizer to ``path`` (default: a new temporary folder)."""
    torch.manual_seed(seed)
    d = _folder(path, "tiny-gpt2-")
    cfg = GPT2Config(vocab_size=len(VOCAB), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                     bos_token_id=3, eos_token_id=1, pad_token_id=0,
                     # GPT-2's default init (0.02) gives near-uniform logits through the tied
                     # embeddings at this size, which LoRA alone can barely move.
                     initializer_range=0.2)
    GPT2LMHeadModel(cfg).save_pretrained(d)
    word_tokenizer(append_eos=False).save_pretrained(d)
    return str(d)
