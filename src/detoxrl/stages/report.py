"""``report``: ``report.html`` in the run folder and the model card beside the saved policy.

Both state the fingerprints of what they describe; when ``eval.json`` evaluated another policy than the
one saved now (the policy was remade after the evaluation), both say so.
"""

from __future__ import annotations

from pathlib import Path

from detoxrl.config import Config
from detoxrl.evaluation.model_card import write_model_card
from detoxrl.evaluation.report import build_report
from detoxrl.stages import fingerprint
from detoxrl.stages.eval import evaluated_policy
from detoxrl.utils import read_json


def output(cfg: Config) -> Path:
    return cfg.run_path / "report.html"


def provenance(cfg: Config, ev: dict | None) -> dict:
    """The fingerprints of the policy, the reference and the evaluation, and what does not match. With
    ``redteam.rounds`` the policy is the last red-team round's, made by the ``redteam`` stage."""
    policy_dir, stage, stage_out = evaluated_policy(cfg)
    key = f"policy ({stage})"
    fps = {name: (fp or {}).get("hash") for name, fp in (
        (key, fingerprint.read(stage_out, stage)),
        ("reference (sft)", fingerprint.read(cfg.path(cfg.sft.output_dir) / "config.json", "sft")),
        ("evaluation (eval)", fingerprint.read(cfg.run_path / "eval.json", "eval")))}
    warnings = []
    evaluated = (ev or {}).get("made_from", {}).get("policy")
    if ev is not None and fps[key] and evaluated != fps[key]:
        warnings.append(f"eval.json evaluated policy {evaluated or '(unrecorded)'}, but the policy saved in "
                        f"{policy_dir} is {fps[key]}; run `detoxrl eval` (or `detoxrl run`) again")
    meta_path = policy_dir / "detoxrl.json"
    changes = read_json(meta_path).get("config_changes", []) if meta_path.exists() else []
    return {"fingerprints": fps, "warnings": warnings, "config_changes": changes}


def run(cfg: Config) -> Path:
    eval_path = cfg.run_path / "eval.json"
    ev = read_json(eval_path) if eval_path.exists() else None
    prov = provenance(cfg, ev)
    out = build_report(cfg, provenance=prov)
    policy_dir = evaluated_policy(cfg)[0]
    if (policy_dir / "config.json").exists():
        write_model_card(cfg, policy_dir, ev, provenance=prov)
    return out
