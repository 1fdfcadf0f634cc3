"""``report``: ``report.html`` in the run folder and the model card beside the saved policy."""

from __future__ import annotations

from pathlib import Path

from detoxrl.config import Config
from detoxrl.evaluation.model_card import write_model_card
from detoxrl.evaluation.report import build_report
from detoxrl.utils import read_json


def output(cfg: Config) -> Path:
    return cfg.run_path / "report.html"


def run(cfg: Config) -> Path:
    out = build_report(cfg)
    policy_dir = cfg.path(cfg.ppo.output_dir)
    if (policy_dir / "config.json").exists():
        eval_path = cfg.run_path / "eval.json"
        write_model_card(cfg, policy_dir, read_json(eval_path) if eval_path.exists() else None)
    return out
