"""The pipeline: which stages run, in what order, each skipped when its output already exists.

``prepare → sft → train-rm → ppo → eval → report``. Every stage reads the validated config and writes
into the one run folder; the resolved config is saved there as ``config.yaml``.
"""

from __future__ import annotations

import time
from pathlib import Path

from detoxrl.config import Config
from detoxrl.errors import ModelError
from detoxrl.utils import atomic_write_text, console, write_json

STAGES = ("prepare", "sft", "train-rm", "ppo", "eval", "report")


def save_resolved_config(cfg: Config) -> Path:
    path = cfg.run_path / "config.yaml"
    atomic_write_text(path, cfg.to_yaml())
    return path


def stage_enabled(cfg: Config, stage: str) -> bool:
    return {"sft": cfg.sft.enabled, "train-rm": cfg.train_rm.enabled,
            "report": cfg.report.enabled}.get(stage, True)


def stage_output(cfg: Config, stage: str) -> Path:
    """The file whose presence means the stage is done."""
    if stage == "prepare":
        return cfg.run_path / ("testbed/fingerprint.json" if cfg.testbed else "prepared.json")
    if stage == "sft":
        return cfg.path(cfg.sft.output_dir) / "config.json"
    if stage == "train-rm":
        return cfg.path(cfg.train_rm.output_dir) / "config.json"
    if stage == "ppo":
        return cfg.path(cfg.ppo.output_dir) / "config.json"
    if stage == "eval":
        return cfg.run_path / "eval.json"
    if stage == "report":
        return cfg.run_path / "report.html"
    raise ValueError(f"unknown stage {stage}")


# ------------------------------------------------------------------------------------------ stages
def prepare(cfg: Config) -> Path:
    """Build the embedded testbed, or check that a preset's models and data can be reached."""
    if cfg.testbed is not None:
        from detoxrl.testbed.build import prepare as prepare_testbed

        return prepare_testbed(cfg)
    return prepare_preset(cfg)


def prepare_preset(cfg: Config) -> Path:
    """Resolve (download into the Hugging Face cache, or find there) every model the config names."""
    from transformers import AutoConfig

    names = [cfg.resolve(cfg.policy.name_or_path)]
    names += [cfg.resolve(j.model) for j in cfg.reward.judges + cfg.eval.extra_judges
              if j.type == "hf" and j.model]
    resolved = {}
    for name in names:
        if "{run_dir}" in name or Path(name).exists():
            resolved[name] = "local"
            continue
        try:
            AutoConfig.from_pretrained(name)
        except OSError as exc:
            raise ModelError(f"cannot reach model {name} (offline and not cached?): {str(exc).splitlines()[0]}") from None
        resolved[name] = "ok"
    out = stage_output(cfg, "prepare")
    write_json(out, {"models": resolved, "data": cfg.data.source})
    return out


def run_stage(cfg: Config, stage: str, *, resume: bool = False, samples: int | None = None) -> Path:
    save_resolved_config(cfg)
    t0 = time.perf_counter()
    console.rule(f"[bold]{stage}")
    if stage == "prepare":
        out = prepare(cfg)
    elif stage == "sft":
        from detoxrl.sft import run_sft

        out = run_sft(cfg)
    elif stage == "train-rm":
        from detoxrl.rewards.train import train_rm

        out = train_rm(cfg)
    elif stage == "ppo":
        from detoxrl.rl.trainer import train_ppo

        out = train_ppo(cfg, resume=resume)
    elif stage == "eval":
        from detoxrl.evaluation.evaluate import run_eval

        run_eval(cfg, samples=samples)
        out = stage_output(cfg, "eval")
    elif stage == "report":
        from detoxrl.evaluation.report import build_report

        out = build_report(cfg)
        _write_card(cfg)
    else:
        raise ValueError(f"unknown stage {stage}")
    _record_time(cfg, stage, time.perf_counter() - t0)
    console.print(f"{stage}: done in {time.perf_counter() - t0:.1f}s → {out}")
    return out


def _write_card(cfg: Config) -> None:
    policy_dir = cfg.path(cfg.ppo.output_dir)
    if not (policy_dir / "config.json").exists():
        return
    from detoxrl.evaluation.model_card import write_model_card
    from detoxrl.utils import read_json

    eval_path = stage_output(cfg, "eval")
    write_model_card(cfg, policy_dir, read_json(eval_path) if eval_path.exists() else None)


def _record_time(cfg: Config, stage: str, seconds: float) -> None:
    import json

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
