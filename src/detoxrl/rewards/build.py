"""Build judges from their settings (presets applied, ``{run_dir}`` resolved)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from detoxrl.config import Config, JudgeSettings
from detoxrl.errors import ConfigError, DataError
from detoxrl.rewards.base import Judge
from detoxrl.rewards.hf import HFClassifierJudge
from detoxrl.rewards.lexicon import LexiconJudge
from detoxrl.rewards.presets import apply_preset
from detoxrl.rewards.profanity import ProfanityCheckJudge
from detoxrl.rewards.reward_model import RewardModelJudge
from detoxrl.rewards.self_critique import build_self_critique_judge

TESTBED_LEXICON = "{run_dir}/testbed/lexicon.txt"


def _resolve(value: str, cfg: Config | None, name: str, key: str) -> str:
    if cfg is not None:
        return cfg.resolve(value)
    if "{run_dir}" in value:
        raise ConfigError(f"judge {name}: {key} {value!r} contains {{run_dir}} but no config was given")
    return value


def build_judge(settings: JudgeSettings, cfg: Config | None = None,
                device: str | torch.device = "cpu") -> Judge:
    """Make the judge that ``settings`` describe (type ``hf``, ``lexicon``, ``profanity``, ``reward_model`` or
    ``self_critique``)."""
    s = apply_preset(settings)
    if s.type == "hf":
        if not s.model:
            raise ConfigError(f"judge {s.name}: type hf needs `model` (a hub id or a model folder) or a preset")
        return HFClassifierJudge(
            s.name, _resolve(s.model, cfg, s.name, "model"), label=s.label, label_is_good=s.label_is_good,
            score=s.score, activation=s.activation, dimensions=s.dimensions,
            severity_labels=s.severity_labels, threshold=s.threshold, max_length=s.max_length,
            batch_size=s.batch_size, trust_remote_code=s.trust_remote_code, device=device)
    if s.type == "lexicon":
        if not s.lexicon:
            raise ConfigError(f"judge {s.name}: type lexicon needs `lexicon` (a word-list file, "
                              "'testbed' or 'better-profanity')")
        if s.lexicon == "testbed":
            if cfg is None:
                raise ConfigError(f"judge {s.name}: lexicon 'testbed' needs a config (the run folder)")
            source = str(cfg.path(TESTBED_LEXICON))
            if not Path(source).exists():
                raise DataError(f"judge {s.name}: lexicon file {source} does not exist (run `detoxrl prepare` "
                                "to build the testbed)")
        else:
            source = _resolve(s.lexicon, cfg, s.name, "lexicon")
        return LexiconJudge.from_source(s.name, source, threshold=s.threshold, score=s.score,
                                        batch_size=s.batch_size, max_length=s.max_length)
    if s.type == "reward_model":
        return RewardModelJudge(s.name, _resolve(s.path or s.model, cfg, s.name, "path"), threshold=s.threshold,
                                max_length=s.max_length, batch_size=s.batch_size, device=device)
    if s.type == "self_critique":
        return build_self_critique_judge(s, cfg, _resolve(s.model, cfg, s.name, "model"), device)
    if s.type == "profanity":
        return ProfanityCheckJudge(s.name, threshold=s.threshold, score=s.score, batch_size=s.batch_size,
                                   max_length=s.max_length)
    raise ConfigError(f"judge {s.name}: unknown type {s.type!r}")  # pragma: no cover - validated


def build_judges(settings: Sequence[JudgeSettings], cfg: Config | None = None,
                 device: str | torch.device = "cpu") -> list[Judge]:
    """Build several judges; their names must be unique (they key logs and reports)."""
    names = [s.name for s in settings]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"judge names must be unique; repeated: {dupes}")
    return [build_judge(s, cfg, device) for s in settings]
