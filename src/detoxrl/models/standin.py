"""Full-size stand-ins: random-initialised models with exactly the configs of the hub models the presets
name, each with a tokenizer of the same kind and size (:mod:`detoxrl.models.standin_tokenizers`),
saved with ``save_pretrained`` so that every loader reads them as it reads the hub's.

Their outputs are meaningless. They exist to measure what the real sizes cost (time, memory) and to
run the presets' code paths at those sizes on a machine that cannot reach the hub: ``detoxrl standin
DIR`` writes them, then ``--set policy.name_or_path=DIR/flan-t5-base`` and
``--set reward.judges.0.model=DIR/roberta-hate-speech-dynabench-r4-target`` use them.

The configs below are the architecture values of the hub checkpoints' ``config.json`` files (sizes,
activations, special token ids, labels); fields that only describe how a checkpoint was made or which
task prefixes a pipeline adds are left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

from detoxrl.errors import ConfigError
from detoxrl.models.standin_tokenizers import TOKENIZERS
from detoxrl.utils import atomic_dir, atomic_write_text, progress, read_json, write_json

_T5_V1_1 = {
    "model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "vocab_size": 32128, "d_kv": 64,
    "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True,
    "tie_word_embeddings": False, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "n_positions": 512, "dropout_rate": 0.1, "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0,
    "is_encoder_decoder": True, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    "use_cache": True,
}
_BERT_BASE = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02, "position_embedding_type": "absolute",
}
_TOXIC_LABELS = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def _labels(names: list[str]) -> dict[str, dict]:
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


@dataclass(frozen=True)
class StandinSpec:
    """One stand-in: the hub id it stands in for, its config values, and its tokenizer's kind and size."""

    name: str  # the folder it is written to
    hub_id: str
    task: str  # "seq2seq" | "causal" | "classifier"
    config: dict[str, Any]
    tokenizer: str  # a key of standin_tokenizers.TOKENIZERS
    tokenizer_size: int
    model_max_length: int
    note: str = ""


STANDINS: dict[str, StandinSpec] = {s.name: s for s in [
    StandinSpec("flan-t5-small", "google/flan-t5-small", "seq2seq",
                {**_T5_V1_1, "d_model": 512, "d_ff": 1024, "num_layers": 8, "num_decoder_layers": 8,
                 "num_heads": 6}, "t5", 32_100, 512,
                "the tokenizer has 32,100 tokens and the embeddings 32,128 rows, as in the real checkpoint"),
    StandinSpec("flan-t5-base", "google/flan-t5-base", "seq2seq",
                {**_T5_V1_1, "d_model": 768, "d_ff": 2048, "num_layers": 12, "num_decoder_layers": 12,
                 "num_heads": 12}, "t5", 32_100, 512,
                "the tokenizer has 32,100 tokens and the embeddings 32,128 rows, as in the real checkpoint"),
    StandinSpec("roberta-hate-speech-dynabench-r4-target", "facebook/roberta-hate-speech-dynabench-r4-target",
                "classifier",
                {**_BERT_BASE, "model_type": "roberta", "architectures": ["RobertaForSequenceClassification"],
                 "vocab_size": 50265, "max_position_embeddings": 514, "type_vocab_size": 1,
                 "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
                 **_labels(["nothate", "hate"])}, "roberta", 50_265, 512),
    StandinSpec("toxic-bert", "unitary/toxic-bert", "classifier",
                {**_BERT_BASE, "model_type": "bert", "architectures": ["BertForSequenceClassification"],
                 "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2,
                 "layer_norm_eps": 1e-12, "pad_token_id": 0, "problem_type": "multi_label_classification",
                 **_labels(_TOXIC_LABELS)}, "bert", 30_522, 512),
    StandinSpec("gpt2", "gpt2", "causal",
                {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 50257,
                 "n_positions": 1024, "n_ctx": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
                 "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
                 "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "summary_type": "cls_index",
                 "summary_use_proj": True, "summary_activation": None, "summary_proj_to_labels": True,
                 "summary_first_dropout": 0.1, "bos_token_id": 50256, "eos_token_id": 50256}, "gpt2", 50_257, 1024),
]}
"""Every stand-in by folder name (the hub id's last part)."""

_AUTO = {"seq2seq": AutoModelForSeq2SeqLM, "causal": AutoModelForCausalLM, "classifier": AutoModelForSequenceClassification}


@dataclass
class StandinResult:
    """What :func:`write_standin` wrote."""

    spec: StandinSpec
    path: Path
    parameters: int
    tokens: int
    fillers: int
    notes: list[str] = field(default_factory=list)


def resolve_names(names: Sequence[str] | None) -> list[str]:
    """The stand-ins asked for (names, or comma-separated lists of names), all of them when none is;
    an unknown name raises :class:`ConfigError` listing the known ones."""
    wanted = [n.strip() for item in (names or []) for n in item.split(",") if n.strip()]
    if not wanted:
        return list(STANDINS)
    unknown = [n for n in wanted if n not in STANDINS]
    if unknown:
        raise ConfigError(f"unknown stand-in(s) {unknown}; known: {', '.join(STANDINS)}")
    return list(dict.fromkeys(wanted))


def standin_config(spec: StandinSpec, overrides: dict[str, Any] | None = None):
    """The transformers config of ``spec`` (``overrides`` change sizes, for tests)."""
    values = {**spec.config, **(overrides or {})}
    return AutoConfig.for_model(values.pop("model_type"), **values)


def build_model(spec: StandinSpec, seed: int = 0, overrides: dict[str, Any] | None = None):
    """A freshly initialised model of ``spec``'s architecture (seeded).

    transformers 5 builds every T5 with its output layer tied to the input embeddings, whatever
    ``tie_word_embeddings`` says; FLAN-T5's checkpoints hold a separate ``lm_head`` (which
    ``from_pretrained`` keeps untied), so a config with ``tie_word_embeddings: false`` gets its own
    output layer here, initialised as T5 v1.1 initialises it (normal, std ``initializer_factor``).
    """
    torch.manual_seed(seed)
    model = _AUTO[spec.task].from_config(standin_config(spec, overrides))
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if spec.config.get("tie_word_embeddings") is False and out is not None and out.weight is inp.weight:
        std = float(spec.config.get("initializer_factor", 1.0))
        out.weight = nn.Parameter(torch.empty_like(inp.weight).normal_(0.0, std))
    return model


def _write_config(folder: Path, spec: StandinSpec, overrides: dict[str, Any] | None) -> None:
    """``config.json`` with the hub's values over what ``save_pretrained`` wrote (it writes
    ``tie_word_embeddings: true`` for every T5, which older transformers would tie and rescale)."""
    path = folder / "config.json"
    atomic_write_text(path, json.dumps({**read_json(path), **spec.config, **(overrides or {})}, indent=2,
                                       sort_keys=True) + "\n")


def write_standin(spec: StandinSpec, folder: str | Path, texts: Sequence[str], *, seed: int = 0,
                  overrides: dict[str, Any] | None = None,
                  on_step: Callable[[str], None] | None = None) -> StandinResult:
    """Train ``spec``'s tokenizer on ``texts``, build its model, and save both into ``folder`` (replaced
    in one rename: a failure leaves no half-written folder). ``on_step`` hears each step's name."""
    step = on_step or (lambda _: None)
    step("tokenizer")
    trained = TOKENIZERS[spec.tokenizer](texts, spec.tokenizer_size, spec.model_max_length)
    step("model")
    model = build_model(spec, seed, overrides)
    n_params = sum(p.numel() for p in model.parameters())
    notes = [spec.note] if spec.note else []
    if trained.fillers:
        notes.append(f"{trained.fillers:,} of the {len(trained.tokenizer):,} tokens are fillers (the corpus is "
                     "too small to train that many); no text produces them")
    step("save")
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        _write_config(tmp, spec, overrides)
        trained.tokenizer.save_pretrained(tmp)
    return StandinResult(spec, Path(folder), n_params, len(trained.tokenizer), trained.fillers, notes)


MANIFEST = "standins.json"
README = """\
Stand-ins written by `detoxrl standin`: random-initialised models whose configs are those of the hub
models named below, each with a tokenizer of the same kind and vocabulary size trained on DialogSum.

THEIR OUTPUTS ARE MEANINGLESS. The weights are random and the tokenizers were trained on a small corpus
(most of their vocabulary is filler tokens that no text produces). They exist only to measure what the
real sizes cost (time, memory) and to run the code paths at those sizes without the hub. Never report
a figure they produce as a result about the real models.

"""


def write_readme(folder: str | Path, results: Sequence[StandinResult]) -> Path:
    """``README.txt`` in ``folder``: what the stand-ins are, and one line per model in the folder (those
    written now, and those an earlier call wrote, kept in ``standins.json``)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    entries = read_json(manifest) if manifest.exists() else {}
    for r in results:
        entries[r.path.name] = (f"{r.path.name}: stands in for {r.spec.hub_id}; {r.parameters:,} parameters, "
                                f"tokenizer of {r.tokens:,} tokens" + "".join(f"; {n}" for n in r.notes))
    entries = {k: v for k, v in sorted(entries.items()) if (folder / k / "config.json").exists()}
    write_json(manifest, entries)
    path = folder / "README.txt"
    atomic_write_text(path, README + "".join(f"- {line}\n" for line in entries.values()))
    return path


def write_standins(folder: str | Path, names: Sequence[str], texts: Sequence[str], *, seed: int = 0,
                   overrides: dict[str, Any] | None = None) -> list[StandinResult]:
    """Write the stand-ins ``names`` into ``folder/<name>``, one progress bar each, then the README."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    with progress() as bar:
        for name in names:
            task = bar.add_task(name, total=3, info="")

            def on_step(what: str, task=task) -> None:
                bar.update(task, info=what)
                if what != "tokenizer":
                    bar.advance(task)

            results.append(write_standin(STANDINS[name], folder / name, texts, seed=seed, overrides=overrides,
                                         on_step=on_step))
            bar.update(task, completed=3, info=f"{results[-1].parameters / 1e6:.1f}M parameters")
    write_readme(folder, results)
    return results
