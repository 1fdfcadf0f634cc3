"""Validated configuration for every stage.

A run is described by one YAML file (see ``configs/``) plus dotted overrides from the command line
(``--set ppo.learning_rate=1e-5``). Everything is checked before any work starts: unknown keys, wrong
types and impossible values raise :class:`ConfigError` whose message names the key's full path.

Paths in a config may contain ``{run_dir}``; it is replaced by the run folder, so that one stage can
name another stage's output (``policy.name_or_path: "{run_dir}/sft"``).

- :mod:`~detoxrl.config.sections`: one settings model per YAML section (``policy``, ``data``, ``ppo``, ...),
  each field documented; :mod:`~detoxrl.config.rewards` holds the ``reward`` (judges) and ``train_rm``
  sections, :mod:`~detoxrl.config.base` what they all share;
- :mod:`~detoxrl.config.testbed`: :class:`TestbedSettings`, the ``testbed`` section (the embedded default);
- :mod:`~detoxrl.config.redteam`: :class:`RedTeamSettings`, the ``redteam`` section;
- :mod:`~detoxrl.config.labels`: :class:`LabelSettings`, the ``labels`` section (candidates and the labelling page);
- :mod:`~detoxrl.config.run_config`: :class:`Config`, the whole run (sections, cross-section checks, paths);
- :mod:`~detoxrl.config.loading`: :func:`load_config` — YAML, presets by name, overrides, error messages.

Every name is importable from here: ``from detoxrl.config import Config, PPOSettings, load_config``.
"""

from detoxrl.config.base import CRITIQUE_REQUEST, REVISION_REQUEST
from detoxrl.config.labels import DEFAULT_CRITERION, PAGE_SPECIAL_LABELS, LabelSettings, SimulatedLabellerSettings
from detoxrl.config.loading import (
    DEFAULT_CONFIG,
    PACKAGE_CONFIGS,
    apply_override,
    config_from_dict,
    load_config,
    read_yaml,
)
from detoxrl.config.redteam import RedLMSettings, RedRLSettings, RedTeamAttackSettings, RedTeamSettings
from detoxrl.config.run_config import Config
from detoxrl.config.sections import (
    DIMENSIONS,
    ConstitutionSettings,
    CurriculumSettings,
    DataSettings,
    EvalSettings,
    GenerationSettings,
    JudgeSettings,
    KLSettings,
    LoraSettings,
    ModelSettings,
    PPOSettings,
    ReportSettings,
    RewardModelSettings,
    RewardSettings,
    SeverityMix,
    SeverityTier,
    SFTSettings,
    SFTTaskSettings,
    SLCAISettings,
    TestbedSettings,
    TinyJudgeSettings,
    TinyT5Settings,
)

__all__ = [
    "CRITIQUE_REQUEST", "DEFAULT_CONFIG", "DEFAULT_CRITERION", "DIMENSIONS", "PACKAGE_CONFIGS",
    "PAGE_SPECIAL_LABELS", "REVISION_REQUEST",
    "Config", "ConstitutionSettings", "CurriculumSettings", "DataSettings", "EvalSettings",
    "GenerationSettings", "JudgeSettings", "KLSettings", "LabelSettings", "LoraSettings", "ModelSettings",
    "PPOSettings", "RedLMSettings", "RedRLSettings", "RedTeamAttackSettings", "RedTeamSettings",
    "ReportSettings", "RewardModelSettings", "RewardSettings", "SFTSettings", "SFTTaskSettings",
    "SLCAISettings", "SeverityMix", "SeverityTier", "SimulatedLabellerSettings",
    "TestbedSettings", "TinyJudgeSettings", "TinyT5Settings",
    "apply_override", "config_from_dict", "load_config", "read_yaml",
]
