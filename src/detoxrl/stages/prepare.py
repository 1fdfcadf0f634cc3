"""``prepare``: build the embedded testbed, or check that a preset's models and data can be reached."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig

from detoxrl.config import Config
from detoxrl.errors import ModelError
from detoxrl.testbed.build import prepare as prepare_testbed
from detoxrl.utils import write_json


def output(cfg: Config) -> Path:
    """The file whose presence means the stage is done."""
    return cfg.run_path / ("testbed/fingerprint.json" if cfg.testbed else "prepared.json")


def run(cfg: Config) -> Path:
    if cfg.testbed is not None:
        return prepare_testbed(cfg)
    return prepare_preset(cfg)


def prepare_preset(cfg: Config) -> Path:
    """Resolve (download into the Hugging Face cache, or find there) every model the config names."""
    names = [cfg.resolve(cfg.policy.name_or_path)]
    names += [cfg.resolve(j.model) for j in cfg.reward.judges + cfg.eval.extra_judges
              if j.type in ("hf", "reward_model", "self_critique") and j.model]
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
    out = output(cfg)
    write_json(out, {"models": resolved, "data": cfg.data.source})
    return out
