"""``train-rm``: a reward model from rankings, or a judge classifier from labelled text."""

from __future__ import annotations

from pathlib import Path

from detoxrl.config import Config
from detoxrl.rewards.train import train_rm


def output(cfg: Config) -> Path:
    return cfg.path(cfg.train_rm.output_dir) / "config.json"


def run(cfg: Config) -> Path:
    return train_rm(cfg)
