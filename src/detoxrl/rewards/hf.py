"""A judge over any Hugging Face sequence classifier (``AutoModelForSequenceClassification``).

Let ``z`` be the model's logits for a text and ``p = softmax(z)`` (one class per text) or
``p = σ(z)`` (multi-label). With ``label`` the configured label (chosen by name through
``config.id2label``) and ``good = label_is_good``:

- ``score``: ``logit`` → ``z_label`` if good else ``−z_label``; ``prob`` → ``p_label`` if good else
  ``1 − p_label``; ``logprob`` → ``log p_label`` if good else ``log(1 − p_label)``. Higher is better.
  For Meta's model with ``label: nothate`` this is the seed recipe's reward (the ``nothate`` logit).
- ``toxicity`` = ``1 − p_label`` if good else ``p_label`` (the probability of the bad class(es)).
- ``dimensions[d]`` = ``max`` over the labels mapped to ``d`` of ``p_l`` (``1 − p_l`` for the good label).
- ``severity`` = mean of ``p_l`` over ``severity_labels``, or ``toxicity`` when none are given.

A model with a single output (a reward model trained on rankings) needs no label: its score is the
output itself, ``toxicity = σ(−z)``, and it reads ``(prompt, response)`` pairs when prompts are given,
exactly as it was trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from detoxrl.config import DIMENSIONS
from detoxrl.errors import ConfigError, ModelError
from detoxrl.rewards.base import Judge, JudgeResult, cpu_threads_for


def check_model_source(path: str) -> None:
    """Raise :class:`ModelError` naming ``path`` if it looks like a folder but is not a usable one.

    Hub ids (``org/name``) are left for ``from_pretrained`` to resolve.
    """
    p = Path(path).expanduser()
    looks_local = p.is_absolute() or path.startswith((".", "~")) or p.exists() or path.count("/") > 1
    if not looks_local:
        return
    if not p.is_dir():
        raise ModelError(f"model folder {path} does not exist")
    if not (p / "config.json").exists():
        raise ModelError(f"model folder {path} has no config.json (is it a save_pretrained folder?)")
    if not any(p.glob("*.safetensors")) and not any(p.glob("*.safetensors.index.json")):
        raise ModelError(f"model folder {path} has no .safetensors weights (detoxrl loads safetensors only)")


def load_classifier(name_or_path: str, *, trust_remote_code: bool = False, revision: str | None = None,
                    device: str | torch.device = "cpu"):
    """Load ``(model, tokenizer)`` from a hub id or a ``save_pretrained`` folder, in eval mode."""
    check_model_source(name_or_path)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, use_safetensors=True, trust_remote_code=trust_remote_code, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot load classifier {name_or_path}: {msg}") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"tokenizer of {name_or_path} has no pad token")
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return model, tokenizer


def model_labels(model) -> list[str]:
    """Label names in column order, from ``config.id2label``."""
    id2label = model.config.id2label or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(model.config.num_labels)]


def label_index(labels: Sequence[str], label: str, *, where: str) -> int:
    """Column of ``label`` by exact name, else by a unique case-insensitive match; else ModelError."""
    if label in labels:
        return list(labels).index(label)
    folded = [i for i, name in enumerate(labels) if name.lower() == label.lower()]
    if len(folded) == 1:
        return folded[0]
    raise ModelError(f"{where} has no label {label!r}; its labels are {list(labels)}")


def classifier_max_length(model, tokenizer, requested: int) -> int:
    """The longest input the classifier takes: ``requested``, the tokenizer's limit and the model's
    position embeddings (RoBERTa-style models lose two: positions start after the padding index)."""
    limits = [requested]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max and tok_max < 1e9:
        limits.append(int(tok_max))
    pos = getattr(model.config, "max_position_embeddings", None)
    if pos:
        offset = 2 if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
        limits.append(pos - offset)
    return int(min(limits))


def _nonempty_batch(enc: dict, fill_id: int) -> dict:
    """Make sure every row has at least one attended token (empty texts without special tokens)."""
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if ids.shape[1] == 0:
        ids = torch.full((ids.shape[0], 1), fill_id, dtype=ids.dtype)
        mask = torch.ones_like(ids)
    empty = mask.sum(1) == 0
    if empty.any():
        ids, mask = ids.clone(), mask.clone()
        ids[empty, 0] = fill_id
        mask[empty, 0] = 1
    out = dict(enc)
    out["input_ids"], out["attention_mask"] = ids, mask
    if "token_type_ids" in out:
        out["token_type_ids"] = out["token_type_ids"][:, : ids.shape[1]]
        if out["token_type_ids"].shape[1] < ids.shape[1]:
            out["token_type_ids"] = torch.zeros_like(ids)
    return out


class HFClassifierJudge(Judge):
    """A judge over a sequence classifier; see the module docstring for the exact formulas."""

    def __init__(
        self,
        name: str,
        model_name_or_path: str,
        *,
        label: str | None = None,
        label_is_good: bool = True,
        score: Literal["logit", "prob", "logprob"] = "logit",
        activation: Literal["softmax", "sigmoid"] = "softmax",
        dimensions: Mapping[str, str] | None = None,
        severity_labels: Sequence[str] = (),
        threshold: float = 0.5,
        max_length: int = 512,
        batch_size: int = 64,
        trust_remote_code: bool = False,
        revision: str | None = None,
        device: str | torch.device = "cpu",
        model=None,
        tokenizer=None,
    ) -> None:
        self.name = name
        self.source = model_name_or_path
        self.label_is_good = label_is_good
        self.score_kind = score
        self.activation = activation
        self.threshold = threshold
        self.batch_size = batch_size
        self.device = torch.device(device)
        if score not in ("logit", "prob", "logprob"):
            raise ConfigError(f"judge {name}: score must be logit, prob or logprob, not {score!r}")
        if activation not in ("softmax", "sigmoid"):
            raise ConfigError(f"judge {name}: activation must be softmax or sigmoid, not {activation!r}")
        if model is None or tokenizer is None:
            model, tokenizer = load_classifier(model_name_or_path, trust_remote_code=trust_remote_code,
                                               revision=revision, device=self.device)
        self.model, self.tokenizer = model, tokenizer
        self.threads = cpu_threads_for(model, self.device)
        self.labels = model_labels(model)
        where = f"judge {name}: model {model_name_or_path}"
        self.single_output = len(self.labels) == 1
        if label is None:
            if not self.single_output:
                raise ConfigError(f"judge {name}: set `label` to one of the model's labels {self.labels}")
            self.label_col = 0
        else:
            self.label_col = label_index(self.labels, label, where=where)
        self.label = self.labels[self.label_col]
        dims: dict[str, list[int]] = {}
        for lab, dim in (dimensions or {}).items():  # validated by JudgeSettings
            dims.setdefault(dim, []).append(label_index(self.labels, lab, where=where))
        self.dimension_cols = dims
        self.dimensions = tuple(d for d in DIMENSIONS if d in dims)
        self.severity_cols = [label_index(self.labels, lab, where=where) for lab in severity_labels]
        self.max_length = classifier_max_length(model, tokenizer, max_length)

    # ---------------------------------------------------------------------------------------------
    def logits(self, texts: list[str], prompts: list[str] | None = None) -> Tensor:
        """Raw logits ``[B, num_labels]`` for one batch (truncated to ``max_length`` tokens)."""
        pair = prompts if (prompts is not None and self.single_output) else None
        if pair is not None:
            enc = self.tokenizer(pair, texts, truncation="longest_first", max_length=self.max_length,
                                 padding=True, return_tensors="pt")
        else:
            enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True,
                                 return_tensors="pt")
        fill = self.tokenizer.unk_token_id if self.tokenizer.unk_token_id is not None else self.tokenizer.pad_token_id
        enc = _nonempty_batch(dict(enc), int(fill))
        enc = {k: v.to(self.device) for k, v in enc.items()}
        return self.model(**enc).logits.float()

    def probs(self, logits: Tensor) -> Tensor:
        if self.single_output or self.activation == "sigmoid":
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=-1)

    def _log_good_prob(self, z: Tensor) -> Tensor:
        """``log p_label`` (good label) or ``log(1 − p_label)`` (bad label), computed stably."""
        c, good = self.label_col, self.label_is_good
        if self.single_output or self.activation == "sigmoid":
            return torch.nn.functional.logsigmoid(z[:, c] if good else -z[:, c])
        log_p = torch.log_softmax(z, dim=-1)
        if good:
            return log_p[:, c]
        others = torch.cat([log_p[:, :c], log_p[:, c + 1 :]], dim=1)
        return torch.logsumexp(others, dim=1)

    def _score_batch(self, texts: list[str], prompts: list[str] | None) -> JudgeResult:
        z = self.logits(texts, prompts)
        p = self.probs(z)
        c, good = self.label_col, self.label_is_good
        p_label = p[:, c]
        toxicity = 1 - p_label if good else p_label
        if self.score_kind == "logit":
            score = z[:, c] if good else -z[:, c]
        elif self.score_kind == "prob":
            score = 1 - toxicity
        else:
            score = self._log_good_prob(z)
        dims = {}
        for d in self.dimensions:
            cols = [(1 - p[:, k]) if (k == c and good) else p[:, k] for k in self.dimension_cols[d]]
            dims[d] = torch.stack(cols, 0).amax(0)
        severity = p[:, self.severity_cols].mean(1) if self.severity_cols else toxicity
        return JudgeResult(self.name, score, toxicity, dims, severity, self.threshold, bool(self.severity_cols))

    def __repr__(self) -> str:
        return (f"HFClassifierJudge(name={self.name!r}, model={self.source!r}, label={self.label!r}, "
                f"score={self.score_kind}, activation={self.activation})")
