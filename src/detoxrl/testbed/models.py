"""Untrained tiny models of the real architectures: T5 for the policy, RoBERTa for Meta's judge, BERT for
toxic-bert's.

Both are built with a fixed seed, so the same settings give the same weights byte for byte, and saved
with ``save_pretrained`` (safetensors) next to their tokenizer: they load with plain transformers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerBase,
    RobertaConfig,
    RobertaForSequenceClassification,
    T5Config,
    T5ForConditionalGeneration,
)

from detoxrl.config import TinyJudgeSettings, TinyT5Settings
from detoxrl.errors import ConfigError
from detoxrl.testbed.kinds import TOXIC_BERT_LABELS

JUDGE_LABELS = {0: "nothate", 1: "hate"}
"""The labels of Meta's hate-speech model, which the testbed judge imitates."""


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside a block and restore the caller's state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_tiny_t5(tokenizer: PreTrainedTokenizerBase, settings: TinyT5Settings, seed: int = 0) -> T5ForConditionalGeneration:
    """A randomly initialised T5 whose vocabulary and special ids match ``tokenizer``.

    ``decoder_start_token_id`` is the pad id (as in T5); generation ends at ``</s>``.
    """
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=settings.d_model,
        d_ff=settings.d_ff,
        d_kv=settings.d_kv,
        num_layers=settings.num_layers,
        num_decoder_layers=settings.num_decoder_layers,
        num_heads=settings.num_heads,
        dropout_rate=0.1,
        feed_forward_proj="relu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with _seeded(seed):
        model = T5ForConditionalGeneration(config)
    model.generation_config.decoder_start_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def _judge_sizes(tokenizer: PreTrainedTokenizerBase, settings: TinyJudgeSettings) -> dict:
    """The encoder sizes both testbed judges share (``testbed.judge``), checked, for ``tokenizer``."""
    if settings.hidden_size % settings.num_attention_heads:
        raise ConfigError("testbed.judge.hidden_size must be a multiple of num_attention_heads")
    return dict(vocab_size=len(tokenizer), hidden_size=settings.hidden_size,
                num_hidden_layers=settings.num_hidden_layers, num_attention_heads=settings.num_attention_heads,
                intermediate_size=settings.intermediate_size,
                max_position_embeddings=settings.max_position_embeddings, type_vocab_size=1,
                pad_token_id=tokenizer.pad_token_id)


def build_tiny_judge(tokenizer: PreTrainedTokenizerBase, settings: TinyJudgeSettings, seed: int = 0) -> RobertaForSequenceClassification:
    """A randomly initialised RoBERTa classifier with labels ``{0: nothate, 1: hate}``.

    RoBERTa numbers positions from ``pad_token_id + 1``, so the longest input must be at most
    ``max_position_embeddings - pad_token_id - 1``. As in RoBERTa (514 positions, 512 tokens) the
    tokenizer's ``model_max_length`` is set to ``max_position_embeddings - 2``, which always fits.
    """
    if tokenizer.pad_token_id > 1:
        raise ConfigError("the judge tokenizer's pad id must be 0 or 1 (RoBERTa's position offset)")
    config = RobertaConfig(
        **_judge_sizes(tokenizer, settings),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        id2label=dict(JUDGE_LABELS),
        label2id={v: k for k, v in JUDGE_LABELS.items()},
        problem_type="single_label_classification",
    )
    with _seeded(seed):
        model = RobertaForSequenceClassification(config)
    tokenizer.model_max_length = settings.max_position_embeddings - 2  # as RoBERTa: 514 positions, 512 tokens
    return model


def build_tiny_multilabel_judge(tokenizer: PreTrainedTokenizerBase, settings: TinyJudgeSettings,
                                seed: int = 0) -> BertForSequenceClassification:
    """A randomly initialised BERT with ``unitary/toxic-bert``'s six labels, multi-label (sigmoid per label),
    the same size as the RoBERTa judge (``settings``), for the same tokenizer."""
    id2label = dict(enumerate(TOXIC_BERT_LABELS))
    config = BertConfig(
        **_judge_sizes(tokenizer, settings),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        problem_type="multi_label_classification",
    )
    with _seeded(seed + 1):
        return BertForSequenceClassification(config)
