"""Train a reward model from rankings, or a toxicity classifier from labelled text (``train-rm``).

- ``mode: rankings`` — a rankings file (:mod:`detoxrl.data.rankings`: ``{"prompt", "completions",
  "ranks" | "special", "labeller", "time"}``, 1 = best, ties allowed) becomes every pair of completions
  with different ranks (:func:`~detoxrl.rewards.rm_data.pairs_of`); special labels are excluded and
  counted, several labellers' rankings of an item are all used and their agreement is reported
  (``train_metrics.json`` ``rankings``). A sequence classifier with one output ``r(prompt, completion)``
  learns from the pairwise loss ``−log σ(r_chosen − r_rejected)`` (:func:`pairwise_loss`). Metric:
  held-out pair accuracy. Beside the model, ``detoxrl_rm.json`` holds the normalisation and
  calibration that make it a judge (``type: reward_model``, :mod:`detoxrl.rewards.reward_model`).
- ``mode: labels`` — rows ``{"text", "label"}`` train a cross-entropy classifier whose
  ``id2label`` are ``train_rm.labels`` (``nothate``/``hate`` by default, the labels of Meta's model,
  so the result is scored by exactly the same code path). Metrics: held-out accuracy, F1, AUC.
- ``mode: multilabel`` — rows ``{"text", <label>: 0|1, ...}`` (one column per label of
  ``train_rm.labels``, toxic-bert's layout) train a sigmoid per label with binary cross-entropy
  (``problem_type: multi_label_classification``, as ``unitary/toxic-bert``). Metrics per label:
  accuracy, F1 and AUC at 0.5; ``accuracy`` and ``auc`` are their means over the labels.

The output is a plain Hugging Face folder (safetensors + tokenizer + ``train_metrics.json``) written
atomically to ``train_rm.output_dir``; ``AutoModelForSequenceClassification.from_pretrained`` loads
it without detoxrl.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from detoxrl.config import Config, RewardModelSettings
from detoxrl.data.files import column, read_rows
from detoxrl.data.rankings import read_rankings, special_labels
from detoxrl.errors import ConfigError, DataError, ModelError, TrainingError
from detoxrl.rewards.base import cpu_threads_for, torch_threads
from detoxrl.rewards.hf import check_model_source, classifier_max_length
from detoxrl.rewards.judge_eval import f1_score, roc_auc
from detoxrl.rewards.reward_model import RM_FILE, rm_calibration
from detoxrl.rewards.rm_data import (
    Pair,
    bucketed_batches,
    collate,
    encode,
    format_rankings_summary,
    item_length,
    label_ids,
    multilabel_targets,
    pad_fill_ids,
    pairs_of,
    positive_index,
    rankings_summary,
    split_by_item,
    split_heldout,
)
from detoxrl.utils import atomic_dir, configure_threads, console, progress, set_seed, write_json


def pairwise_loss(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """Bradley–Terry loss ``mean(−log σ(r_chosen − r_rejected))`` (= ``softplus(r_rejected − r_chosen)``)."""
    return F.softplus(r_rejected - r_chosen).mean()


def lr_at(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``: a factor in [0, 1]."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def load_base(base: str, labels: Sequence[str] | None, multilabel: bool = False):
    """Tokenizer, sequence classifier and its label names: one output (``reward``) when ``labels`` is
    None (rankings), else one per label (a sigmoid each when ``multilabel``).

    In ``labels`` mode a base model that already has exactly these label names keeps its column
    order (and head); otherwise the head is (re)made with ``id2label`` = ``labels`` in order.
    """
    check_model_source(base)
    try:
        config = AutoConfig.from_pretrained(base)
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load base model {base}: {str(exc).splitlines()[0]}") from None
    if labels is None:
        names = ["reward"]
        problem = "regression"
    else:
        existing = [str(config.id2label.get(i, "")) for i in range(config.num_labels)] if config.id2label else []
        names = existing if sorted(existing) == sorted(labels) else list(labels)
        problem = "multi_label_classification" if multilabel else "single_label_classification"
    id2label = {i: n for i, n in enumerate(names)}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            base, id2label=id2label, label2id={n: i for i, n in id2label.items()},
            problem_type=problem, ignore_mismatched_sizes=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load base model {base}: {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"tokenizer of {base} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model, names


# ----------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _forward_batches(model, feats: list[dict], batch_size: int, pad_id: int, fill_id: int) -> Tensor:
    model.eval()
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
    out = torch.empty(len(feats), model.config.num_labels)
    for k in range(0, len(order), batch_size):
        idx = order[k : k + batch_size]
        out[idx] = model(**collate([feats[i] for i in idx], pad_id, fill_id)).logits.float()
    return out


def classifier_metrics(logits: Tensor, y: Tensor, labels: Sequence[str]) -> dict:
    """Accuracy, cross-entropy, and for the toxic class (if any) F1 and AUC."""
    pred = logits.argmax(-1)
    out = {"n": int(len(y)), "accuracy": float((pred == y).float().mean()),
           "loss": float(F.cross_entropy(logits, y))}
    pos = positive_index(labels)
    if pos is not None:
        truth = (y == pos).numpy()
        out["positive_label"] = labels[pos]
        out["f1"] = f1_score((pred == pos).numpy(), truth)
        out["auc"] = roc_auc(torch.softmax(logits, -1)[:, pos].numpy(), truth)
    return out


def multilabel_metrics(logits: Tensor, y: Tensor, labels: Sequence[str]) -> dict:
    """Per label (sigmoid at 0.5): accuracy, F1, AUC (None where the held-out rows have one class only);
    ``accuracy``, ``auc`` (over the labels that have one) and ``loss`` (binary cross-entropy) overall."""
    p = torch.sigmoid(logits)
    per = {}
    for k, name in enumerate(labels):
        truth = (y[:, k] > 0.5).numpy()
        pred = (p[:, k] >= 0.5).numpy()
        per[name] = {"positives": int(truth.sum()), "accuracy": float((pred == truth).mean()),
                     "f1": f1_score(pred, truth), "auc": roc_auc(p[:, k].numpy(), truth)}
    aucs = [v["auc"] for v in per.values() if v["auc"] is not None]
    return {"n": int(len(y)), "accuracy": sum(v["accuracy"] for v in per.values()) / len(per),
            "auc": sum(aucs) / len(aucs) if aucs else None,
            "loss": float(F.binary_cross_entropy_with_logits(logits, y)), "per_label": per}


def pair_metrics(r_chosen: Tensor, r_rejected: Tensor) -> dict:
    """Pair accuracy (``r_chosen > r_rejected``), pairwise loss and mean margin."""
    return {"n_pairs": int(len(r_chosen)), "pair_accuracy": float((r_chosen > r_rejected).float().mean()),
            "loss": float(pairwise_loss(r_chosen, r_rejected)),
            "mean_margin": float((r_chosen - r_rejected).mean())}


# ------------------------------------------------------------------------------------- training
class _Data(NamedTuple):
    train: list  # labels: (feature, class id); rankings: (chosen feature, rejected feature)
    eval: list
    evaluate: object  # model -> metrics dict
    info: dict | None = None  # rankings: what the files held (rm_data.rankings_summary)


def _labels_data(s: RewardModelSettings, cfg: Config, tokenizer, names, max_len, seed) -> _Data:
    def load(path: str) -> tuple[list[str], list]:
        rows = read_rows(cfg.path(path))
        texts = [str(t) for t in column(rows, "text", cfg.path(path))]
        if s.mode == "multilabel":  # a 0/1 target per label
            return texts, multilabel_targets(rows, names, str(cfg.path(path)))
        return texts, label_ids(column(rows, "label", cfg.path(path)), names, rows, str(cfg.path(path)))

    texts, ys = load(s.train_file)
    if s.eval_file:
        train = list(zip(texts, ys))
        ev = list(zip(*load(s.eval_file)))
    else:
        train, ev = split_heldout(list(zip(texts, ys)), s.heldout_share, seed)
    seen = ({k for _, y in train for k, v in enumerate(y) if v} if s.mode == "multilabel"
            else {y for _, y in train})
    missing = sorted(set(range(len(names))) - seen)
    if missing:
        console.print(f"[yellow]train-rm: no training rows with label(s) {[names[i] for i in missing]}")
    tr_feats = encode(tokenizer, [t for t, _ in train], max_len)
    ev_feats = encode(tokenizer, [t for t, _ in ev], max_len)
    ev_y = torch.tensor([y for _, y in ev])
    pad, fill = pad_fill_ids(tokenizer)
    metric = multilabel_metrics if s.mode == "multilabel" else classifier_metrics

    def evaluate(m) -> dict:
        return metric(_forward_batches(m, ev_feats, 256, pad, fill), ev_y, names)

    return _Data(list(zip(tr_feats, [y for _, y in train])), list(zip(ev_feats, ev_y.tolist())), evaluate)


def _rankings_data(s: RewardModelSettings, cfg: Config, tokenizer, max_len, seed) -> _Data:
    specials = special_labels(s.special_labels)
    src_tr = str(cfg.path(s.train_file))
    rankings = read_rankings(cfg.path(s.train_file), specials)
    info = {"train_file": rankings_summary(rankings, len(pairs_of(rankings, src_tr)))}  # all checked first
    if not info["train_file"]["pairs"]:
        raise DataError(f"{src_tr}: rankings give no pairs; need at least one of each, training and held-out "
                        "(ties, single completions and special labels make none)")
    if s.eval_file:
        src_ev = str(cfg.path(s.eval_file))
        tr_rank, ev_rank = rankings, read_rankings(cfg.path(s.eval_file), specials)
        info["eval_file"] = rankings_summary(ev_rank, len(pairs_of(ev_rank, src_ev)))
    else:
        tr_rank, ev_rank = split_by_item(rankings, s.heldout_share, seed)
        src_ev = src_tr
    train, ev = pairs_of(tr_rank, src_tr), pairs_of(ev_rank, src_ev)
    if not train or not ev:
        raise DataError(f"{src_tr}: rankings give {len(train)} training and {len(ev)} "
                        "held-out pairs; need at least one of each (ties, single completions and special labels "
                        "make none)")

    def feats(pairs: list[Pair]) -> tuple[list[dict], list[dict]]:
        prompts = [p.prompt for p in pairs]
        return (encode(tokenizer, [p.chosen for p in pairs], max_len, prompts),
                encode(tokenizer, [p.rejected for p in pairs], max_len, prompts))

    tr_c, tr_r = feats(train)
    ev_c, ev_r = feats(ev)
    pad, fill = pad_fill_ids(tokenizer)

    def evaluate(m) -> dict:
        rc = _forward_batches(m, ev_c, 256, pad, fill)[:, 0]
        rr = _forward_batches(m, ev_r, 256, pad, fill)[:, 0]
        return pair_metrics(rc, rr)

    return _Data(list(zip(tr_c, tr_r)), list(zip(ev_c, ev_r)), evaluate, info)


def rm_file(model, data: _Data, pad: int, fill: int) -> dict:
    """``detoxrl_rm.json``: the trained reward model's normalisation and calibration on its training
    pairs (:func:`~detoxrl.rewards.reward_model.rm_calibration`)."""
    rc = _forward_batches(model, [c for c, _ in data.train], 256, pad, fill)[:, 0]
    rr = _forward_batches(model, [r for _, r in data.train], 256, pad, fill)[:, 0]
    return rm_calibration(rc, rr)


def _batch_loss(model, batch: list, mode: str, pad: int, fill: int) -> Tensor:
    if mode in ("labels", "multilabel"):
        inputs = collate([f for f, _ in batch], pad, fill)
        y = torch.tensor([y for _, y in batch])
        logits = model(**inputs).logits.float()
        return F.binary_cross_entropy_with_logits(logits, y) if mode == "multilabel" else F.cross_entropy(logits, y)
    n = len(batch)
    inputs = collate([c for c, _ in batch] + [r for _, r in batch], pad, fill)
    r = model(**inputs).logits.float()[:, 0]
    return pairwise_loss(r[:n], r[n:])


def fit(model, data: _Data, s: RewardModelSettings, seed: int, pad: int, fill: int) -> tuple[list[float], int]:
    """AdamW with warm-up and linear decay, gradient clipping at 1, length-bucketed seeded batches.

    Returns the training-loss curve (means over windows of up to 20 steps) and the number of steps.
    """
    steps_per_epoch = math.ceil(len(data.train) / s.batch_size)
    total = max(1, math.ceil(s.epochs * steps_per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_at(k, total, int(0.06 * total)))
    gen = torch.Generator().manual_seed(seed)
    lengths = [item_length(item) for item in data.train]
    curve: list[float] = []
    window: list[float] = []
    batches: list[list[int]] = []
    model.train()
    with progress() as prog:
        task = prog.add_task("train-rm", total=total, info="")
        for step in range(total):
            if not batches:
                batches = bucketed_batches(lengths, s.batch_size, gen)
            loss = _batch_loss(model, [data.train[i] for i in batches.pop()], s.mode, pad, fill)
            if not torch.isfinite(loss):
                raise TrainingError(f"train-rm: non-finite loss at step {step + 1}; lower train_rm.learning_rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            window.append(loss.item())
            if len(window) == max(1, min(20, steps_per_epoch)) or step == total - 1:
                curve.append(sum(window) / len(window))
                window = []
            prog.update(task, advance=1, info=f"loss {curve[-1] if curve else window[-1]:.4f}")
    model.eval()
    return curve, total


def train_rm(cfg: Config) -> Path:
    """Train every model of ``train_rm.extra``, then the reward model / judge that ``cfg.train_rm``
    describes (last, so that its folder existing means the stage finished); return its output folder."""
    for extra in cfg.train_rm.extra:
        train_one(cfg, extra)
    return train_one(cfg, cfg.train_rm)


def train_one(cfg: Config, s: RewardModelSettings) -> Path:
    """Train the one reward model / judge that ``s`` describes; return its output folder."""
    if not s.train_file:
        raise ConfigError("train_rm.train_file: set the jsonl/csv file to train on")
    if not s.base_model:
        raise ConfigError("train_rm.base_model: set the model to start from (a hub id or a folder)")
    labels_mode = s.mode in ("labels", "multilabel")
    if labels_mode and (len(set(s.labels)) != len(s.labels) or len(s.labels) < 2):
        raise ConfigError(f"train_rm.labels: need at least two distinct labels, got {s.labels}")
    seed = cfg.seed_for(s.seed)
    configure_threads()
    set_seed(seed)
    base = cfg.resolve(s.base_model)
    tokenizer, model, names = load_base(base, s.labels if labels_mode else None, s.mode == "multilabel")
    max_len = classifier_max_length(model, tokenizer, s.max_length)
    data = (_labels_data(s, cfg, tokenizer, names, max_len, seed) if labels_mode
            else _rankings_data(s, cfg, tokenizer, max_len, seed))
    pad, fill = pad_fill_ids(tokenizer)

    with torch_threads(cpu_threads_for(model)):
        before = data.evaluate(model)
        t0 = time.perf_counter()
        curve, steps = fit(model, data, s, seed, pad, fill)
        seconds = time.perf_counter() - t0
        after = data.evaluate(model)
        rm_info = None if labels_mode else rm_file(model, data, pad, fill)

    metrics = {
        "mode": s.mode, "base_model": base, "labels": names, "seed": seed, "max_length": max_len,
        "n_train": len(data.train), "n_eval": len(data.eval), "epochs": s.epochs, "steps": steps,
        "batch_size": s.batch_size, "learning_rate": s.learning_rate,
        "train_seconds": round(seconds, 2), "examples_per_second": round(steps * s.batch_size / seconds, 1),
        "loss_curve": [round(x, 5) for x in curve], "eval_before": before, "eval": after,
    }
    if data.info is not None:
        metrics["rankings"] = data.info
        console.print(f"train-rm: {cfg.path(s.train_file)}: {format_rankings_summary(data.info['train_file'])}")
    out = cfg.path(s.output_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "train_metrics.json", metrics)
        if rm_info is not None:
            write_json(tmp / RM_FILE, rm_info)
    key = "accuracy" if labels_mode else "pair_accuracy"
    extra = f", AUC {after['auc']:.3f}" if after.get("auc") is not None else ""
    console.print(f"train-rm: held-out {key} {before[key]:.3f} → {after[key]:.3f}{extra} "
                  f"({len(data.train)} {'rows' if labels_mode else 'pairs'}, {seconds:.1f}s) → {out}")
    return out
