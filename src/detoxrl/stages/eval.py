"""``eval``: before/after evaluation of the policy on held-out prompts → ``eval.json``, ``eval_table.csv``.

``eval.json`` names the models it compared by their stages' fingerprints (``made_from``), so a stale
evaluation is recognised: the report warns when the policy's fingerprint has changed since.
"""

from __future__ import annotations

from pathlib import Path

from detoxrl.config import Config
from detoxrl.evaluation.evaluate import run_eval
from detoxrl.stages import fingerprint
from detoxrl.stages.device import is_main_process
from detoxrl.utils import write_json


def output(cfg: Config) -> Path:
    return cfg.run_path / "eval.json"


def made_from(cfg: Config) -> dict[str, str | None]:
    """The fingerprint hashes of the trained policy (``ppo``) and the reference (``sft``), if recorded."""
    found = {}
    for key, stage, folder in (("policy", "ppo", cfg.ppo.output_dir), ("reference", "sft", cfg.sft.output_dir)):
        fp = fingerprint.read(cfg.path(folder) / "config.json", stage)
        found[key] = fp.get("hash") if fp else None
    return found


def run(cfg: Config, samples: int | None = None) -> Path:
    result = run_eval(cfg, samples=samples)
    if is_main_process():
        result["made_from"] = made_from(cfg)
        write_json(output(cfg), result)
    return output(cfg)
