"""Audit a judge on a labelled file: accuracy, F1 and ROC AUC, overall and per category.

A text is predicted toxic when the judge's ``toxicity >= threshold``; AUC ranks texts by toxicity.
A row is toxic when its label is one of the positive labels (default :data:`POSITIVE_LABELS`); a file
in which no row, or every row, is toxic is refused, since its metrics would say nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from detoxrl.data.files import column, read_rows
from detoxrl.errors import DataError
from detoxrl.rewards.base import Judge

POSITIVE_LABELS = ("hate", "1", "toxic", "true")


# ---------------------------------------------------------------------------------------- metrics
def average_ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``x`` in ascending order; tied values share the mean of their ranks."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann–Whitney) formula.

    ``AUC = (Σ_{i positive} rank_i − P(P+1)/2) / (P·N)`` with average ranks for ties, i.e. the
    probability that a random positive scores above a random negative, ties counting one half.
    ``None`` when one class is absent.
    """
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(scores)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_counts(pred: Sequence[bool], labels: Sequence[bool]) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)``."""
    p, y = np.asarray(pred, dtype=bool), np.asarray(labels, dtype=bool)
    return int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum()), int((~p & ~y).sum())


def f1_score(pred: Sequence[bool], labels: Sequence[bool]) -> float:
    """``F1 = 2·TP / (2·TP + FP + FN)`` (0 when there are neither predicted nor true positives)."""
    tp, fp, fn, _ = binary_counts(pred, labels)
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0


def binary_metrics(toxicity: Sequence[float], labels: Sequence[bool], threshold: float) -> dict:
    """Accuracy, precision, recall, F1 and AUC of ``toxicity >= threshold`` against ``labels``."""
    tox = np.asarray(toxicity, dtype=float)
    y = np.asarray(labels, dtype=bool)
    pred = tox >= threshold
    tp, fp, fn, tn = binary_counts(pred, y)
    n = len(y)
    return {
        "n": n,
        "positives": int(y.sum()),
        "accuracy": (tp + tn) / n if n else None,
        "precision": tp / (tp + fp) if (tp + fp) else None,
        "recall": tp / (tp + fn) if (tp + fn) else None,
        "f1": f1_score(pred, y) if (2 * tp + fp + fn) else None,  # undefined: no positive anywhere
        "auc": roc_auc(tox, y) if n else None,
        "predicted_toxic_rate": float(pred.mean()) if n else None,
    }


def is_positive(label, positive_labels: Sequence[str] = POSITIVE_LABELS) -> bool:
    """Whether a label value means toxic (compared as lower-case text; ``True`` and 1 count)."""
    if isinstance(label, bool):
        label = "true" if label else "false"
    elif isinstance(label, float) and label.is_integer():
        label = int(label)
    return str(label).strip().lower() in {p.lower() for p in positive_labels}


# ---------------------------------------------------------------------------------------- file
@dataclass
class LabelledFile:
    """The texts of a labelled file, whether each is toxic, and their categories (if asked)."""

    path: Path
    texts: list[str]
    labels: list[bool]
    categories: list[str] | None = None


def _labels_seen(values: Sequence, most: int = 10) -> str:
    seen = sorted({str(v) for v in values})
    shown = ", ".join(repr(v) for v in seen[:most])
    return shown + (f" and {len(seen) - most} more" if len(seen) > most else "")


def read_labelled(path: str | Path, text_column: str = "text", label_column: str = "label",
                  category_column: str | None = None,
                  positive_labels: Sequence[str] = POSITIVE_LABELS) -> LabelledFile:
    """Read a labelled file; :class:`DataError` naming the file and the labels it holds when no row,
    or every row, is positive."""
    rows = read_rows(path)  # refuses a file without rows
    texts = [str(t) for t in column(rows, text_column, path)]
    raw = column(rows, label_column, path)
    labels = [is_positive(v, positive_labels) for v in raw]
    if all(labels) or not any(labels):
        what = "every row is positive" if all(labels) else "no row is positive"
        raise DataError(f"{path}: {what}, so there is nothing to tell apart; labels seen in column "
                        f"{label_column!r}: {_labels_seen(raw)}; positive labels: "
                        f"{_labels_seen(positive_labels)} (name the toxic ones with --positive-label)")
    cats = [str(c) for c in column(rows, category_column, path)] if category_column else None
    return LabelledFile(Path(path), texts, labels, cats)


# ---------------------------------------------------------------------------------------- judge
def judge_eval(judge: Judge, path: str | Path | LabelledFile, text_column: str = "text",
               label_column: str = "label", category_column: str | None = None,
               positive_labels: Sequence[str] = POSITIVE_LABELS) -> dict:
    """Score every text of a labelled file with ``judge`` and compare with the labels.

    ``path`` is the file (read by :func:`read_labelled` with the column and label arguments) or a
    :class:`LabelledFile` already read, for auditing several judges on one file.
    Returns a JSON-ready dict: ``judge``, ``file``, ``threshold``, the overall metrics (``n``,
    ``accuracy``, ``f1``, ``auc``, …), ``n_nonfinite`` (texts the judge could not score; left out of
    the metrics), ``scoring_s`` and ``texts_per_s`` (wall clock of the judge's batched scoring of the
    whole file, model already loaded) and ``categories`` (the same metrics per value of
    ``category_column``).
    """
    data = path if isinstance(path, LabelledFile) else read_labelled(
        path, text_column, label_column, category_column, positive_labels)
    path, texts, labels, cats = data.path, data.texts, data.labels, data.categories
    t0 = time.perf_counter()
    result = judge.score(texts)
    seconds = time.perf_counter() - t0
    tox = result.toxicity.numpy().astype(float)
    ok = np.isfinite(tox)
    y = np.asarray(labels, dtype=bool)
    out = {"judge": judge.name, "file": str(path), "threshold": judge.threshold,
           **binary_metrics(tox[ok], y[ok], judge.threshold), "n_nonfinite": int((~ok).sum()),
           "scoring_s": seconds, "texts_per_s": len(texts) / seconds if seconds > 0 else None}
    if out["n"] == 0:
        raise DataError(f"{path}: judge {judge.name} produced no finite score for any row")
    if cats is not None:
        c = np.asarray(cats)
        out["categories"] = {cat: binary_metrics(tox[ok & (c == cat)], y[ok & (c == cat)], judge.threshold)
                             for cat in sorted(set(cats))}
    return out


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def format_judge_eval(result: dict) -> Table:
    """A rich table: one row overall, then one per category (toxic = true positives in the file,
    flagged = share the judge calls toxic)."""
    table = Table(title=f"judge {result['judge']} on {Path(result['file']).name} "
                        f"(toxic if toxicity ≥ {result['threshold']:g})")
    for col in ("subset", "n", "toxic", "acc", "prec", "recall", "F1", "AUC", "flagged"):
        table.add_column(col, justify="left" if col == "subset" else "right", no_wrap=col == "subset")

    def add(name: str, m: dict, style: str | None = None) -> None:
        table.add_row(name, str(m["n"]), str(m["positives"]), _fmt(m["accuracy"]), _fmt(m["precision"]),
                      _fmt(m["recall"]), _fmt(m["f1"]), _fmt(m["auc"]), _fmt(m["predicted_toxic_rate"]),
                      style=style)

    add("all", result, style="bold")
    for cat, m in result.get("categories", {}).items():
        add(cat, m)
    notes = []
    if result.get("texts_per_s"):
        notes.append(f"scored {result['n'] + result.get('n_nonfinite', 0)} texts in {result['scoring_s']:.2f} s "
                     f"({result['texts_per_s']:,.0f} texts/s)")
    if result.get("n_nonfinite"):
        notes.append(f"{result['n_nonfinite']} rows left out: non-finite judge output")
    table.caption = "; ".join(notes) or None
    return table
