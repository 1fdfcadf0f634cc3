"""What each stage's output was made from, so that a changed setting reruns it and a stale output is
recognised.

A stage's fingerprint, written beside its output as ``<stage>.fingerprint.json``, holds

- ``config``: the resolved config keys the stage reads (:data:`SECTIONS`), flattened to dotted keys;
- ``inputs``: the fingerprints (``hash``) of the stage outputs it consumes (:data:`INPUTS`; ``null`` for
  a disabled stage);
- ``files``: the data files it reads by content hash (sha256), or by size and modification time for
  files over :data:`HASH_LIMIT` bytes (``"hashed": false`` says so);
- ``detoxrl``: the version that made it;
- ``hash``: the sha256 of all of the above, which downstream stages record as their input.

Keys that cannot change a stage's output (checkpoint cadence, time-outs) are left out (:data:`IGNORED`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from detoxrl import __version__
from detoxrl.config import Config, CurriculumSettings, LabelSettings
from detoxrl.constitution.principles import resolve_constitution_path
from detoxrl.utils import write_json

CANDIDATE_KEYS = tuple(f"labels.{k}" for k in LabelSettings.model_fields if k not in ("enabled", "simulated"))
"""The ``labels`` keys that make the batch (not the labeller's: a new noise reranks, it does not resample)."""

SECTIONS: dict[str, tuple[str, ...]] = {
    "prepare": ("testbed", "data"),
    "sft": ("seed", "sft", "data", "constitution.path", "constitution.critique_request",
            "constitution.revision_request"),
    "candidates": ("seed", "data", "policy", "reward", "eval.extra_judges", "ppo.generation", "sft.enabled",
                   "sft.output_dir", *CANDIDATE_KEYS),
    "labels": ("seed", "data", "labels.simulated", "labels.output_dir", "labels.split", "labels.seed",
               "train_rm.special_labels"),
    "train-rm": ("seed", "train_rm"),
    "constitution": ("seed", "policy", "data", "constitution.path", "constitution.critique_request",
                     "constitution.revision_request", "constitution.sl", "reward.judges", "eval.extra_judges",
                     "sft.max_target_tokens", "sft.length_multiple", "sft.weight_decay", "sft.warmup_ratio",
                     "sft.max_grad_norm", "ppo.generation"),
    "ppo": ("seed", "policy", "data", "reward", "ppo", "curriculum", "constitution"),
    "redteam": ("seed", "policy", "data", "reward", "eval.generation", "eval.extra_judges", "redteam",
                "ppo.output_dir"),
    "eval": ("seed", "policy", "data", "reward", "eval", "ppo.output_dir"),
    "report": ("name", "report"),
}
"""The config sections (or single keys) each stage reads."""

INPUTS: dict[str, tuple[str, ...]] = {
    "prepare": (),
    "sft": ("prepare",),
    "candidates": ("prepare", "sft"),
    "labels": ("prepare", "candidates"),
    "train-rm": ("prepare",),
    "constitution": ("prepare", "sft", "train-rm"),
    "ppo": ("prepare", "sft", "train-rm", "constitution"),
    "redteam": ("prepare", "sft", "train-rm", "ppo"),
    "eval": ("prepare", "sft", "train-rm", "ppo", "redteam"),
    "report": ("eval", "ppo", "redteam"),
}
"""The stages whose outputs each stage consumes. ``train-rm`` reads ``labels``' rankings through its
``train_file``, fingerprinted by content (so a default run's fingerprints stay as they were)."""

OPTIONAL_INPUTS: dict[str, tuple[str, ...]] = {"report": ("redteam",), "eval": ("redteam",)}
"""Inputs recorded only when that stage ran (is enabled) and :func:`uses` says the stage reads it: reports
and evaluations made before it existed stay current."""


def uses(cfg: Config, stage: str, upstream: str) -> bool:
    """Whether ``stage`` reads ``upstream``'s output under ``cfg``: ``eval`` reads ``redteam``'s only when
    ``redteam.rounds`` makes the policy it evaluates."""
    if (stage, upstream) == ("eval", "redteam"):
        return cfg.redteam.rounds > 0
    return True


def extra_sections(cfg: Config, stage: str) -> tuple[str, ...]:
    """Config sections a stage reads only under some settings: ``sft`` the policy when it has no base model;
    ``redteam`` with rounds what PPO reads; ``eval`` the red-team settings when it replays, attacks or
    evaluates a round's policy."""
    if stage == "sft" and cfg.sft.base_model is None:
        return ("policy",)
    if stage == "redteam" and cfg.redteam.rounds:
        return ("ppo", "curriculum", "constitution")
    if stage == "eval" and (cfg.eval.redteam_replay or cfg.eval.redteam_attack or cfg.redteam.rounds):
        return ("redteam",)
    return ()

IGNORED = frozenset({"ppo.checkpoint_every", "ppo.keep_checkpoints", "ppo.collective_timeout_s", "ppo.work_dir"})
"""Keys that change how a stage runs but not what it makes."""

UNSET_LEFT_OUT = frozenset({"ppo.redteam_prompts", "eval.redteam_replay", "eval.redteam_attack"})
"""Keys recorded only when set: runs made before they existed keep their fingerprints."""

_CURRICULUM = CurriculumSettings().model_dump(mode="json")
DEFAULT_LEFT_OUT: dict[str, Any] = {f"curriculum.{k}": _CURRICULUM[k]
                                    for k in ("tier_column", "grade_column", "tier_thresholds", "severe_at")}
DEFAULT_LEFT_OUT.update({"train_rm.extra": [], "ppo.work_dir": "{run_dir}/ppo", "redteam.rounds": 0,
                         "redteam.round_steps": 50})
"""Keys recorded only when changed from their default (here), so that runs and checkpoints made before
they existed keep their fingerprints and resume."""


def default_left_out(key: str, value: Any) -> bool:
    """Whether ``key`` is one of :data:`DEFAULT_LEFT_OUT` and has its default ``value``."""
    return key in DEFAULT_LEFT_OUT and value == DEFAULT_LEFT_OUT[key]

HASH_LIMIT = 256 * 1024 * 1024


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists stay values."""
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def stage_config(cfg: Config, stage: str) -> dict[str, Any]:
    """The resolved, flattened config keys ``stage`` reads (``{run_dir}`` left as written)."""
    full = flatten(cfg.model_dump(mode="json"))
    sections = SECTIONS[stage] + extra_sections(cfg, stage)
    keep = {k: v for k, v in full.items()
            if any(k == s or k.startswith(s + ".") for s in sections) and k not in IGNORED
            and not (k in UNSET_LEFT_OUT and v is None) and not default_left_out(k, v)}
    return dict(sorted(keep.items()))


def data_files(cfg: Config, stage: str) -> list[Path]:
    """The local data files ``stage`` reads (the testbed's come in through ``prepare``'s fingerprint)."""
    names: list[str] = []
    if stage in ("sft", "candidates", "ppo", "redteam", "eval") and cfg.data.source != "testbed":
        names.append(cfg.data.source)
    if stage == "eval" and cfg.eval.redteam_replay:
        names.append(cfg.eval.redteam_replay)
    if stage == "ppo" and cfg.ppo.redteam_prompts:
        names.append(cfg.ppo.redteam_prompts)
    if stage == "sft" and cfg.sft.train_file:
        names.append(cfg.sft.train_file)
    if stage == "labels" and cfg.labels.simulated is None:  # people's rankings: the stage's input
        names.append(f"{cfg.labels.output_dir}/rankings.jsonl")
    if stage == "train-rm":
        names += [f for f in (cfg.train_rm.train_file, cfg.train_rm.eval_file) if f]
    if stage == "prepare" and cfg.testbed is not None:
        names.append("{run_dir}/testbed/fingerprint.json")
    ppo_like = stage in ("constitution", "ppo") or (stage == "redteam" and cfg.redteam.rounds > 0)
    if (stage == "sft" and cfg.sft.tasks.enabled) or (ppo_like and cfg.constitution.enabled):
        names.append(str(resolve_constitution_path(cfg.constitution.path, cfg)))  # the principles' words
    if stage in ("candidates", "constitution", "ppo", "redteam", "eval"):  # self_critique judges read principles
        names += [str(resolve_constitution_path(j.constitution or cfg.constitution.path, cfg))
                  for j in cfg.reward.judges if j.type == "self_critique"]
    if stage == "sft" and cfg.sft.tasks.enabled and cfg.data.source != "testbed":
        names.append(cfg.sft.tasks.labels_file)
    files: list[Path] = []
    for name in names:
        p = cfg.path(name)
        files += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p] if p.is_file() else []
    return files


def file_stamp(path: Path) -> dict[str, Any]:
    """sha256 of the file's bytes, or its size and modification time when it is larger than HASH_LIMIT."""
    st = path.stat()
    if st.st_size > HASH_LIMIT:
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "hashed": False}
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"sha256": h.hexdigest(), "size": st.st_size}


def compute(cfg: Config, stage: str, inputs: dict[str, str | None]) -> dict[str, Any]:
    """The fingerprint ``stage`` would have if it ran now, given its inputs' fingerprint hashes."""
    fp = {"stage": stage, "detoxrl": __version__, "config": stage_config(cfg, stage),
          "inputs": {s: inputs.get(s) for s in INPUTS[stage]
                     if not (s in OPTIONAL_INPUTS.get(stage, ()) and inputs.get(s) is None)},
          "files": {str(p): file_stamp(p) for p in data_files(cfg, stage)}}
    fp["hash"] = hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()
    return fp


def path_for(output: Path, stage: str) -> Path:
    """Where ``stage``'s fingerprint lives: in its output folder, or beside its output file."""
    folder = output.parent
    return folder / f"{stage}.fingerprint.json"


def read(output: Path, stage: str) -> dict[str, Any] | None:
    p = path_for(output, stage)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write(output: Path, stage: str, fp: dict[str, Any]) -> Path:
    p = path_for(output, stage)
    write_json(p, fp)
    return p


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences: ``ppo.learning_rate: 1.41e-05 → 0.0001``, changed inputs and files."""
    out = [f"{k}: {_show(old['config'].get(k, '(unset)'))} → {_show(new['config'].get(k, '(unset)'))}"
           for k in sorted(set(old.get("config", {})) | set(new["config"]))
           if old.get("config", {}).get(k, "(unset)") != new["config"].get(k, "(unset)")]
    out += [f"input {s} was remade" for s in new["inputs"]
            if old.get("inputs", {}).get(s) != new["inputs"][s]]
    out += [f"data file {f} changed" for f in sorted(set(old.get("files", {})) | set(new["files"]))
            if old.get("files", {}).get(f) != new["files"].get(f)]
    if old.get("detoxrl") != new["detoxrl"]:
        out.append(f"detoxrl {old.get('detoxrl')} → {new['detoxrl']}")
    return out


def _show(v: Any) -> str:
    return json.dumps(v) if isinstance(v, (list, dict, str)) or v is None else f"{v:g}" if isinstance(v, float) else str(v)
