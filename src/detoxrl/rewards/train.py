"""Train a reward model from rankings, or a toxicity classifier from labelled text (``train-rm``).

- ``mode: rankings`` — rows ``{"prompt", "completions": [...], "ranks": [...]}`` (1 = best, ties
  allowed) become every pair of completions with different ranks (:func:`rankings_to_pairs`). A
  sequence classifier with one output ``r(prompt, completion)`` learns from the pairwise loss
  ``−log σ(r_chosen − r_rejected)`` (:func:`pairwise_loss`). Metric: held-out pair accuracy.
- ``mode: labels`` — rows ``{"text", "label"}`` train a cross-entropy classifier whose
  ``id2label`` are ``train_rm.labels`` (``nothate``/``hate`` by default, the labels of Meta's model,
  so the result is scored by exactly the same code path). Metrics: held-out accuracy, F1, AUC.

The output is a plain Hugging Face folder (safetensors + tokenizer + ``train_metrics.json``) written
atomically to ``train_rm.output_dir``; ``AutoModelForSequenceClassification.from_pretrained`` loads
it without detoxrl.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from detoxrl.config import Config, RewardModelSettings
from detoxrl.data.files import column, read_rows
from detoxrl.errors import ConfigError, DataError, ModelError, TrainingError
from detoxrl.rewards.base import cpu_threads_for, torch_threads
from detoxrl.rewards.hf import check_model_source
from detoxrl.rewards.judge_eval import POSITIVE_LABELS, f1_score, roc_auc
from detoxrl.utils import atomic_dir, configure_threads, console, progress, set_seed, write_json


# ------------------------------------------------------------------------------------ pure parts
class Pair(NamedTuple):
    prompt: str
    chosen: str
    rejected: str


def _rank_value(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise DataError(f"{where}: rank {v!r} is not a number")
    try:
        x = float(v)
    except ValueError:
        raise DataError(f"{where}: rank {v!r} is not a number") from None
    if not math.isfinite(x):
        raise DataError(f"{where}: rank {v!r} is not a finite number")
    return x


def rankings_to_pairs(rows: Sequence[dict], source: str = "<rankings>") -> list[Pair]:
    """Every ``(prompt, better, worse)`` pair of completions with different ranks (1 = best).

    Tied completions make no pair; a row with one completion makes none. A row whose ``completions``
    and ``ranks`` are not lists of equal length, or whose ranks are not numbers, raises
    :class:`DataError` naming ``source`` and the row (its ``_row`` key if present, else its position).
    Rows of the same prompt must agree: preferences that form a cycle across them (``a > b`` in one
    row, ``b > a`` in another, or ``a > b > c > a``) are refused, naming the rows.
    """
    pairs: list[Pair] = []
    pair_rows: list[str] = []
    for k, row in enumerate(rows, 1):
        label = f"row {row.get('_row', k) if isinstance(row, dict) else k}"
        where = f"{source} {label}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with prompt, completions and ranks")
        comps, ranks = row.get("completions"), row.get("ranks")
        if not isinstance(comps, list) or not isinstance(ranks, list):
            raise DataError(f"{where}: `completions` and `ranks` must both be lists")
        if len(comps) != len(ranks):
            raise DataError(f"{where}: {len(comps)} completions but {len(ranks)} ranks")
        values = [_rank_value(r, where) for r in ranks]
        seen: dict[str, float] = {}
        for comp, value in zip(comps, values):
            key = str(comp)
            if key in seen and seen[key] != value:
                raise DataError(f"{where}: the same completion is ranked both {seen[key]:g} and {value:g} "
                                "(a contradictory ranking: it would be preferred to itself)")
            seen[key] = value
        prompt = str(row.get("prompt") or "")
        for i in range(len(comps)):
            for j in range(i + 1, len(comps)):
                if values[i] == values[j]:
                    continue
                better, worse = (i, j) if values[i] < values[j] else (j, i)
                pairs.append(Pair(prompt, str(comps[better]), str(comps[worse])))
                pair_rows.append(label)
    _refuse_cycles(pairs, pair_rows, source)
    return pairs


def _refuse_cycles(pairs: Sequence[Pair], pair_rows: Sequence[str], source: str) -> None:
    """Raise :class:`DataError` if the preferences of one prompt contain a cycle.

    Per prompt, "chosen beats rejected" is an edge of a directed graph; a ranking that humans could
    have given is acyclic. Kahn's algorithm removes completions that nothing beats; whatever is left
    lies on or behind a cycle, and one cycle is walked out of it for the message.
    """
    graphs: dict[str, dict[str, dict[str, str]]] = {}
    for pair, where in zip(pairs, pair_rows):
        graphs.setdefault(pair.prompt, {}).setdefault(pair.chosen, {}).setdefault(pair.rejected, where)
    for prompt, edges in graphs.items():
        indegree: dict[str, int] = {}
        for a, outs in edges.items():
            indegree.setdefault(a, 0)
            for b in outs:
                indegree[b] = indegree.get(b, 0) + 1
        free = [n for n, d in indegree.items() if d == 0]
        while free:
            n = free.pop()
            for b in edges.get(n, {}):
                indegree[b] -= 1
                if indegree[b] == 0:
                    free.append(b)
        stuck = {n for n, d in indegree.items() if d > 0}
        if not stuck:
            continue
        # every stuck node is beaten by a stuck node: walk backwards until a node repeats
        beaten_by = {b: a for a, outs in edges.items() if a in stuck for b in outs if b in stuck}
        path, node = [], next(iter(sorted(stuck)))
        while node not in path:
            path.append(node)
            node = beaten_by[node]
        cycle = path[path.index(node):][::-1]
        steps = list(zip(cycle, cycle[1:] + cycle[:1]))
        chain = " > ".join(repr(c[:40]) for c in cycle + cycle[:1])
        rows = sorted({edges[a][b] for a, b in steps}, key=lambda r: (len(r), r))
        raise DataError(f"{source} {', '.join(rows)}: contradictory rankings for prompt {prompt[:60]!r}: "
                        f"{chain} is a preference cycle")


def pairwise_loss(r_chosen: Tensor, r_rejected: Tensor) -> Tensor:
    """Bradley–Terry loss ``mean(−log σ(r_chosen − r_rejected))`` (= ``softplus(r_rejected − r_chosen)``)."""
    return F.softplus(r_rejected - r_chosen).mean()


def lr_at(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``: a factor in [0, 1]."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def label_ids(values: Sequence, labels: Sequence[str], rows: Sequence[dict], source: str) -> list[int]:
    """Map label values (names, or indices 0..K−1) to class ids; DataError naming the first bad row."""
    lookup = {name: i for i, name in enumerate(labels)}
    lookup.update({name.lower(): i for i, name in enumerate(labels)})
    out = []
    for v, row in zip(values, rows):
        key = str(v).strip()
        if isinstance(v, bool):
            key = str(int(v))
        elif isinstance(v, float) and v.is_integer():
            key = str(int(v))
        if key in lookup or key.lower() in lookup:
            out.append(lookup.get(key, lookup.get(key.lower())))
        elif key.isdigit() and int(key) < len(labels):
            out.append(int(key))
        else:
            raise DataError(f"{source} row {row.get('_row', '?')}: label {v!r} is not one of {list(labels)} "
                            f"(or an index 0..{len(labels) - 1})")
    return out


def positive_index(labels: Sequence[str]) -> int | None:
    """The toxic class for F1/AUC: a label named like hate/toxic/1/true, else class 1 of two."""
    for i, name in enumerate(labels):
        if name.lower() in POSITIVE_LABELS:
            return i
    return 1 if len(labels) == 2 else None


# ---------------------------------------------------------------------------------------- batching
def _effective_max_length(model, tokenizer, requested: int) -> int:
    limits = [requested]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max and tok_max < 1e9:
        limits.append(int(tok_max))
    pos = getattr(model.config, "max_position_embeddings", None)
    if pos:
        offset = 2 if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
        limits.append(pos - offset)
    return min(limits)


def encode(tokenizer, texts: Sequence[str], max_length: int, pairs: Sequence[str] | None = None) -> list[dict]:
    """Tokenise once (no padding); ``pairs`` are first segments (prompts) for (prompt, text) inputs."""
    if pairs is not None:
        enc = tokenizer(list(pairs), list(texts), truncation="longest_first", max_length=max_length)
    else:
        enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(texts))]


def collate(features: Sequence[dict], pad_id: int, fill_id: int) -> dict[str, Tensor]:
    """Right-pad a batch; an empty sequence gets one ``fill_id`` token so no row is all padding."""
    length = max(1, max(len(f["input_ids"]) for f in features))
    ids = torch.full((len(features), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(features), length), dtype=torch.long)
    types = torch.zeros((len(features), length), dtype=torch.long) if "token_type_ids" in features[0] else None
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        if n == 0:
            ids[i, 0], mask[i, 0] = fill_id, 1
            continue
        ids[i, :n] = torch.tensor(f["input_ids"])
        mask[i, :n] = 1
        if types is not None:
            types[i, :n] = torch.tensor(f["token_type_ids"])
    out = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        out["token_type_ids"] = types
    return out


# ------------------------------------------------------------------------------------------ model
def load_base(base: str, labels: Sequence[str] | None):
    """Tokenizer, sequence classifier and its label names: one output (``reward``) when ``labels`` is
    None (rankings), else one per label.

    In ``labels`` mode a base model that already has exactly these label names keeps its column
    order (and head); otherwise the head is (re)made with ``id2label`` = ``labels`` in order.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

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
        problem = "single_label_classification"
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


def bucketed_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                     bucket: int = 4) -> list[list[int]]:
    """One epoch of batches with little padding: shuffle, sort each run of ``bucket`` batches' worth
    of rows by length, cut into batches, shuffle the batches. Seeded by ``generator``."""
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    batches = []
    span = batch_size * bucket
    for k in range(0, len(perm), span):
        chunk = sorted(perm[k : k + span], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def _split(items: list, share: float, seed: int) -> tuple[list, list]:
    """Seeded shuffle, then the last ``share`` (at least one item) is held out."""
    items = list(items)
    random.Random(seed).shuffle(items)
    n_eval = max(1, int(round(len(items) * share)))
    if len(items) - n_eval < 1:
        raise DataError(f"only {len(items)} rows: too few to hold some out for evaluation")
    return items[:-n_eval], items[-n_eval:]


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


def _labels_data(s: RewardModelSettings, cfg: Config, tokenizer, names, max_len, seed) -> _Data:
    def load(path: str) -> tuple[list[str], list[int]]:
        rows = read_rows(cfg.path(path))
        texts = [str(t) for t in column(rows, "text", cfg.path(path))]
        return texts, label_ids(column(rows, "label", cfg.path(path)), names, rows, str(cfg.path(path)))

    texts, ys = load(s.train_file)
    if s.eval_file:
        train = list(zip(texts, ys))
        ev = list(zip(*load(s.eval_file)))
    else:
        train, ev = _split(list(zip(texts, ys)), s.heldout_share, seed)
    missing = sorted(set(range(len(names))) - {y for _, y in train})
    if missing:
        console.print(f"[yellow]train-rm: no training rows with label(s) {[names[i] for i in missing]}")
    tr_feats = encode(tokenizer, [t for t, _ in train], max_len)
    ev_feats = encode(tokenizer, [t for t, _ in ev], max_len)
    ev_y = torch.tensor([y for _, y in ev])
    pad, fill = _pad_fill(tokenizer)

    def evaluate(m) -> dict:
        return classifier_metrics(_forward_batches(m, ev_feats, 256, pad, fill), ev_y, names)

    return _Data(list(zip(tr_feats, [y for _, y in train])), list(zip(ev_feats, ev_y.tolist())), evaluate)


def _rankings_data(s: RewardModelSettings, cfg: Config, tokenizer, max_len, seed) -> _Data:
    rows = read_rows(cfg.path(s.train_file))
    rankings_to_pairs(rows, str(cfg.path(s.train_file)))  # every row checked before any split
    if s.eval_file:
        ev_rows, src_ev = read_rows(cfg.path(s.eval_file)), str(cfg.path(s.eval_file))
        tr_rows = rows
    else:
        tr_rows, ev_rows = _split(rows, s.heldout_share, seed)
        src_ev = str(cfg.path(s.train_file))
    train = rankings_to_pairs(tr_rows, str(cfg.path(s.train_file)))
    ev = rankings_to_pairs(ev_rows, src_ev)
    if not train or not ev:
        raise DataError(f"{cfg.path(s.train_file)}: rankings give {len(train)} training and {len(ev)} "
                        "held-out pairs; need at least one of each (ties and single completions make none)")

    def feats(pairs: list[Pair]) -> tuple[list[dict], list[dict]]:
        prompts = [p.prompt for p in pairs]
        return (encode(tokenizer, [p.chosen for p in pairs], max_len, prompts),
                encode(tokenizer, [p.rejected for p in pairs], max_len, prompts))

    tr_c, tr_r = feats(train)
    ev_c, ev_r = feats(ev)
    pad, fill = _pad_fill(tokenizer)

    def evaluate(m) -> dict:
        rc = _forward_batches(m, ev_c, 256, pad, fill)[:, 0]
        rr = _forward_batches(m, ev_r, 256, pad, fill)[:, 0]
        return pair_metrics(rc, rr)

    return _Data(list(zip(tr_c, tr_r)), list(zip(ev_c, ev_r)), evaluate)


def _pad_fill(tokenizer) -> tuple[int, int]:
    pad = int(tokenizer.pad_token_id)
    return pad, int(tokenizer.unk_token_id if tokenizer.unk_token_id is not None else pad)


def _length(item) -> int:
    first = item[0]
    return len(first["input_ids"]) + (len(item[1]["input_ids"]) if isinstance(item[1], dict) else 0)


def _batch_loss(model, batch: list, mode: str, pad: int, fill: int) -> Tensor:
    if mode == "labels":
        inputs = collate([f for f, _ in batch], pad, fill)
        y = torch.tensor([y for _, y in batch])
        return F.cross_entropy(model(**inputs).logits.float(), y)
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
    lengths = [_length(item) for item in data.train]
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
    """Train the reward model / judge that ``cfg.train_rm`` describes; return its output folder."""
    s = cfg.train_rm
    if not s.train_file:
        raise ConfigError("train_rm.train_file: set the jsonl/csv file to train on")
    if not s.base_model:
        raise ConfigError("train_rm.base_model: set the model to start from (a hub id or a folder)")
    labels_mode = s.mode == "labels"
    if labels_mode and (len(set(s.labels)) != len(s.labels) or len(s.labels) < 2):
        raise ConfigError(f"train_rm.labels: need at least two distinct labels, got {s.labels}")
    seed = cfg.seed_for(s.seed)
    configure_threads()
    set_seed(seed)
    base = cfg.resolve(s.base_model)
    tokenizer, model, names = load_base(base, s.labels if labels_mode else None)
    max_len = _effective_max_length(model, tokenizer, s.max_length)
    data = (_labels_data(s, cfg, tokenizer, names, max_len, seed) if labels_mode
            else _rankings_data(s, cfg, tokenizer, max_len, seed))
    pad, fill = _pad_fill(tokenizer)

    with torch_threads(cpu_threads_for(model)):
        before = data.evaluate(model)
        t0 = time.perf_counter()
        curve, steps = fit(model, data, s, seed, pad, fill)
        seconds = time.perf_counter() - t0
        after = data.evaluate(model)

    metrics = {
        "mode": s.mode, "base_model": base, "labels": names, "seed": seed, "max_length": max_len,
        "n_train": len(data.train), "n_eval": len(data.eval), "epochs": s.epochs, "steps": steps,
        "batch_size": s.batch_size, "learning_rate": s.learning_rate,
        "train_seconds": round(seconds, 2), "examples_per_second": round(steps * s.batch_size / seconds, 1),
        "loss_curve": [round(x, 5) for x in curve], "eval_before": before, "eval": after,
    }
    out = cfg.path(s.output_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "train_metrics.json", metrics)
    key = "accuracy" if labels_mode else "pair_accuracy"
    extra = f", AUC {after['auc']:.3f}" if after.get("auc") is not None else ""
    console.print(f"train-rm: held-out {key} {before[key]:.3f} → {after[key]:.3f}{extra} "
                  f"({len(data.train)} {'rows' if labels_mode else 'pairs'}, {seconds:.1f}s) → {out}")
    return out
