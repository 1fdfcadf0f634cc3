"""``eval``: before/after evaluation of the policy on held-out prompts → ``eval.json``, ``eval_table.csv``."""

from __future__ import annotations

from pathlib import Path

from detoxrl.config import Config
from detoxrl.evaluation.evaluate import run_eval


def output(cfg: Config) -> Path:
    return cfg.run_path / "eval.json"


def run(cfg: Config, samples: int | None = None) -> Path:
    run_eval(cfg, samples=samples)
    return output(cfg)
