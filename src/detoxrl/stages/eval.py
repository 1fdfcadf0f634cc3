"""``eval``: before/after evaluation of the policy on held-out prompts → ``eval.json``, ``eval_table.csv``.

``eval.json`` names the models it compared by their stages' fingerprints (``made_from``), so a stale
evaluation is recognised: the report warns when the policy's fingerprint has changed since.
"""

from __future__ import annotations

from pathlib import Path

import torch

from detoxrl.config import Config
from detoxrl.evaluation.evaluate import run_eval
from detoxrl.evaluation.summary import json_clean
from detoxrl.models.loading import load_policy_model
from detoxrl.redteam.replay import replay
from detoxrl.redteam.target import Target
from detoxrl.redteam.training import read_cases
from detoxrl.stages import fingerprint
from detoxrl.stages.device import is_main_process
from detoxrl.stages.redteam import chosen_judges
from detoxrl.utils import console, write_json


def output(cfg: Config) -> Path:
    return cfg.run_path / "eval.json"


def made_from(cfg: Config) -> dict[str, str | None]:
    """The fingerprint hashes of the trained policy (``ppo``) and the reference (``sft``), if recorded."""
    found = {}
    for key, stage, folder in (("policy", "ppo", cfg.ppo.output_dir), ("reference", "sft", cfg.sft.output_dir)):
        fp = fingerprint.read(cfg.path(folder) / "config.json", stage)
        found[key] = fp.get("hash") if fp else None
    return found


def redteam_replay(cfg: Config, device: str | None = None) -> dict:
    """``eval.redteam_replay``'s prompts answered by the reference (before) and the policy (after)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cases = read_cases(cfg.path(cfg.eval.redteam_replay))
    judges = chosen_judges(cfg, device)
    thresholds = {ej.name: ej.threshold for ej in judges}
    seed = cfg.seed_for(cfg.eval.seed)
    targets = []
    for name in (cfg.resolve(cfg.policy.name_or_path), str(cfg.path(cfg.ppo.output_dir))):
        lp = load_policy_model(cfg.policy.model_copy(update={"name_or_path": name}), device=device)
        lp.model.eval()
        targets.append(Target(lp, [ej.judge for ej in judges], cfg.eval.generation, cfg.data.prompt_template,
                              cfg.data.max_prompt_tokens, batch_size=cfg.eval.batch_size, seed=seed,
                              thresholds=thresholds))
    out = replay(targets[0], targets[1], cases, cfg.redteam.success)
    out["file"] = str(cfg.path(cfg.eval.redteam_replay))
    console.print(f"red-team replay ({out['n']} prompts): ASR {out['before']['asr']:.1%} before → "
                  f"{out['after']['asr']:.1%} after ({out['fixed']} fixed, {out['broken']} broken)")
    return out


def run(cfg: Config, samples: int | None = None) -> Path:
    result = run_eval(cfg, samples=samples)
    if cfg.eval.redteam_replay:
        result["redteam_replay"] = json_clean(redteam_replay(cfg))
    if is_main_process():
        result["made_from"] = made_from(cfg)
        write_json(output(cfg), result)
    return output(cfg)
