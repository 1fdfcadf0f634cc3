"""The pipeline: which stages run, in what order, each skipped when its output already exists.

``prepare → sft → train-rm → ppo → eval → report`` (:mod:`detoxrl.stages`, one module each). Every
stage reads the validated config and writes into the one run folder; the resolved config is saved there
as ``config.yaml``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from detoxrl.config import Config
from detoxrl.stages import STAGES
from detoxrl.stages import eval as eval_stage
from detoxrl.stages import ppo, prepare, report, sft, train_rm
from detoxrl.utils import atomic_write_text, console, write_json

MODULES = {"prepare": prepare, "sft": sft, "train-rm": train_rm, "ppo": ppo, "eval": eval_stage,
           "report": report}
__all__ = ["STAGES", "run_pipeline", "run_stage", "stage_output"]


def save_resolved_config(cfg: Config) -> Path:
    path = cfg.run_path / "config.yaml"
    atomic_write_text(path, cfg.to_yaml())
    return path


def stage_enabled(cfg: Config, stage: str) -> bool:
    return {"sft": cfg.sft.enabled, "train-rm": cfg.train_rm.enabled,
            "report": cfg.report.enabled}.get(stage, True)


def stage_output(cfg: Config, stage: str) -> Path:
    """The file whose presence means the stage is done."""
    if stage not in MODULES:
        raise ValueError(f"unknown stage {stage}")
    return MODULES[stage].output(cfg)


def run_stage(cfg: Config, stage: str, *, resume: bool = False, samples: int | None = None) -> Path:
    if stage not in MODULES:
        raise ValueError(f"unknown stage {stage}")
    save_resolved_config(cfg)
    t0 = time.perf_counter()
    console.rule(f"[bold]{stage}")
    if stage == "ppo":
        out = ppo.run(cfg, resume=resume)
    elif stage == "eval":
        out = eval_stage.run(cfg, samples=samples)
    else:
        out = MODULES[stage].run(cfg)
    _record_time(cfg, stage, time.perf_counter() - t0)
    console.print(f"{stage}: done in {time.perf_counter() - t0:.1f}s → {out}")
    return out


def _record_time(cfg: Config, stage: str, seconds: float) -> None:
    path = cfg.run_path / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[stage] = round(seconds, 2)
    write_json(path, data)


def run_pipeline(cfg: Config, *, resume: bool = False, force: tuple[str, ...] = ()) -> None:
    """Run every enabled stage whose output is missing (or that ``force`` names)."""
    t0 = time.perf_counter()
    upstream_changed = False  # once a stage produces new output, everything after it is redone
    for stage in STAGES:
        if not stage_enabled(cfg, stage):
            console.print(f"[dim]{stage}: disabled in the config")
            continue
        out = stage_output(cfg, stage)
        before = out.stat().st_mtime_ns if out.exists() else None
        if stage == "prepare" or before is None or stage in force or upstream_changed:
            run_stage(cfg, stage, resume=resume)
            after = out.stat().st_mtime_ns if out.exists() else None
            upstream_changed = upstream_changed or after != before
        else:
            console.print(f"[dim]{stage}: output exists ({out}), skipped")
    console.print(f"pipeline finished in {time.perf_counter() - t0:.0f}s; run folder {cfg.run_path}")
