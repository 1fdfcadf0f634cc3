"""detoxrl: make language models less toxic with reinforcement learning from human feedback.

The pipeline from Python::

    from detoxrl import load_config, run
    cfg = load_config(overrides=["ppo.steps=20"])   # the embedded default; or a YAML file / preset name
    run(cfg)                                        # every stage that is not up to date

One stage at a time: ``detoxrl.stages.<stage>.run(cfg)``. A loop of your own: :class:`PPOTrainer` with
any :class:`Reward` (``reward(responses, prompts) -> .total, .components``).
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

# name -> (module, attribute); imported on first use, so `import detoxrl` (and the CLI) stays light
_API = {
    "Config": ("detoxrl.config", "Config"),
    "PPOSettings": ("detoxrl.config", "PPOSettings"),
    "load_config": ("detoxrl.config", "load_config"),
    "DetoxError": ("detoxrl.errors", "DetoxError"),
    "load_policy_model": ("detoxrl.models.policy", "load_policy_model"),
    "run": ("detoxrl.pipeline", "run_pipeline"),
    "run_stage": ("detoxrl.pipeline", "run_stage"),
    "PPOTrainer": ("detoxrl.rl.trainer", "PPOTrainer"),
    "Reward": ("detoxrl.rl.rollout", "Reward"),
    "RewardOutput": ("detoxrl.rl.rollout", "RewardOutput"),
    "Rollout": ("detoxrl.rl.rollout", "Rollout"),
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'detoxrl' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
