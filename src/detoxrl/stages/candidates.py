"""``candidates``: the labelling batch, ``labels/batch.jsonl`` (:mod:`detoxrl.feedback.candidates`).

In ``detoxrl run`` only when ``labels.enabled``; ``detoxrl candidates`` runs it either way.
"""

from __future__ import annotations

from pathlib import Path

from detoxrl.config import Config
from detoxrl.feedback.batch import BATCH, labels_dir
from detoxrl.feedback.candidates import run_candidates


def output(cfg: Config) -> Path:
    return labels_dir(cfg) / BATCH


def run(cfg: Config) -> Path:
    return run_candidates(cfg)
