"""The pipeline: which stages run, in what order, each skipped when its output is up to date.

``prepare → sft → candidates → labels → train-rm → constitution → ppo → redteam → eval → report``
(:mod:`detoxrl.stages`, one module each; ``candidates`` and ``labels`` where ``labels.enabled``,
``constitution`` where ``constitution.enabled``, ``redteam`` where ``redteam.enabled``). Every
stage reads the validated config and writes into the one run folder; the resolved config is saved there
as ``config.yaml``, closed by comments that say what the precision settings' ``auto`` resolves to on
this machine (the keys themselves keep ``auto``, as the stage fingerprints do).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from detoxrl.config import Config
from detoxrl.errors import ConfigError
from detoxrl.stages import STAGES, candidates, fingerprint, labels, ppo, prepare, redteam, report, sft, train_rm
from detoxrl.stages import constitution as constitution_stage
from detoxrl.stages import eval as eval_stage
from detoxrl.stages.device import is_main_process, run_precision
from detoxrl.utils import atomic_write_text, console, write_json

MODULES = {"prepare": prepare, "sft": sft, "candidates": candidates, "labels": labels, "train-rm": train_rm,
           "constitution": constitution_stage, "ppo": ppo, "redteam": redteam, "eval": eval_stage,
           "report": report}
__all__ = ["STAGES", "run_pipeline", "run_stage", "stage_output"]


def save_resolved_config(cfg: Config) -> Path:
    path = cfg.run_path / "config.yaml"
    atomic_write_text(path, cfg.to_yaml() + precision_comment(cfg))
    return path


def precision_comment(cfg: Config) -> str:
    """YAML comment lines: each precision setting as this machine resolves it, and why."""
    lines = [p.describe() for p in run_precision(cfg).values()]
    return "# precision on this machine:\n" + "".join(f"#   {line}\n" for line in lines)


def stage_enabled(cfg: Config, stage: str) -> bool:
    return {"sft": cfg.sft.enabled, "candidates": cfg.labels.enabled, "labels": cfg.labels.enabled,
            "train-rm": cfg.train_rm.enabled, "constitution": constitution_stage.enabled(cfg),
            "redteam": cfg.redteam.enabled, "report": cfg.report.enabled}.get(stage, True)


def stage_output(cfg: Config, stage: str) -> Path:
    """The file whose presence means the stage is done."""
    if stage not in MODULES:
        raise ValueError(f"unknown stage {stage}")
    return MODULES[stage].output(cfg)


def current_fingerprint(cfg: Config, stage: str) -> dict:
    """The fingerprint ``stage`` would write if it ran now, from its inputs' stored fingerprints."""
    inputs = {}
    for up in fingerprint.INPUTS[stage]:
        read = stage_enabled(cfg, up) and fingerprint.uses(cfg, stage, up)
        stored = fingerprint.read(stage_output(cfg, up), up) if read else None
        inputs[up] = stored.get("hash") if stored else None
    return fingerprint.compute(cfg, stage, inputs)


def run_stage(cfg: Config, stage: str, *, resume: bool = False, samples: int | None = None,
              allow_config_change: bool = False) -> Path:
    """Run one stage and write its fingerprint beside its output (only once the output is complete)."""
    if stage not in MODULES:
        raise ValueError(f"unknown stage {stage}")
    save_resolved_config(cfg)
    # Taken before the stage runs (what it is about to be made from); prepare's after, since it records
    # the fingerprint file of the testbed it has just built or reused.
    fp = current_fingerprint(cfg, stage) if stage != "prepare" else None
    t0 = time.perf_counter()
    console.rule(f"[bold]{stage}")
    kwargs = {"ppo": {"resume": resume, "allow_config_change": allow_config_change},
              "eval": {"samples": samples}}.get(stage, {})
    out = MODULES[stage].run(cfg, **kwargs)
    if is_main_process():
        fingerprint.write(stage_output(cfg, stage), stage, fp or current_fingerprint(cfg, stage))
        _record_time(cfg, stage, time.perf_counter() - t0)
    console.print(f"{stage}: done in {time.perf_counter() - t0:.1f}s → {out}")
    return out


def _record_time(cfg: Config, stage: str, seconds: float) -> None:
    path = cfg.run_path / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[stage] = round(seconds, 2)
    write_json(path, data)


def run_pipeline(cfg: Config, *, resume: bool = False, force: tuple[str, ...] = (),
                 rerun: bool = True, allow_config_change: bool = False) -> None:
    """Run every enabled stage that is not up to date: its output is missing, ``force`` names it, or
    what it is made from (its config keys, its inputs' fingerprints, its data files) changed since its
    output was made; a remade stage remakes every stage downstream of it. ``rerun=False`` (the CLI's
    ``--no-rerun``) refuses instead, with the list of changes."""
    t0 = time.perf_counter()
    if not rerun:
        stale = _stale_stages(cfg)
        if stale:
            lines = [f"  {stage}: " + "; ".join(why) for stage, why in stale]
            raise ConfigError("these stages' outputs were made from other settings (--no-rerun refuses to "
                              "remake them; drop it to rerun them and every stage after them):\n" + "\n".join(lines))
    for stage in STAGES:
        if not stage_enabled(cfg, stage):
            console.print(f"[dim]{stage}: disabled in the config")
            continue
        out = stage_output(cfg, stage)
        why = _why_run(stage, out, current_fingerprint(cfg, stage), force)
        if why is None:
            console.print(f"[dim]{stage}: up to date ({out}), skipped")
            continue
        if why:
            console.print(f"{stage}: {why}")
        run_stage(cfg, stage, resume=resume, allow_config_change=allow_config_change)
    console.print(f"pipeline finished in {time.perf_counter() - t0:.0f}s; run folder {cfg.run_path}")


def _why_run(stage: str, out: Path, current: dict, force: tuple[str, ...]) -> str | None:
    """Why ``stage`` must run now ('' for prepare, which always runs and reuses its own build), or None."""
    if stage == "prepare":
        return ""
    if stage in force:
        return "forced (--force)"
    if not out.exists():
        return ""
    stored = fingerprint.read(out, stage)
    if stored is None:
        return f"no fingerprint beside {out} (made by an older detoxrl?): rerunning"
    if stored.get("hash") == current["hash"]:
        return None
    return "rerunning, what it is made from changed:\n  " + "\n  ".join(fingerprint.changes(stored, current))


def _stale_stages(cfg: Config) -> list[tuple[str, list[str]]]:
    """The stages whose existing outputs differ from what the config would make now, with the changes
    (judged stage by stage against the stored fingerprints, so a stale stage's dependents are listed
    when their own inputs or keys differ)."""
    stale = []
    for stage in STAGES[1:]:  # prepare always runs, and reuses its build when nothing changed
        out = stage_output(cfg, stage)
        stored = fingerprint.read(out, stage) if stage_enabled(cfg, stage) and out.exists() else None
        if stored is None:
            continue
        current = current_fingerprint(cfg, stage)
        if stored.get("hash") != current["hash"]:
            stale.append((stage, fingerprint.changes(stored, current)))
    return stale
