"""The whole run's config: every section, the checks across sections, and path resolution."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, field_validator, model_validator

from detoxrl.config.labels import LabelSettings
from detoxrl.config.redteam import RedTeamSettings
from detoxrl.config.sections import (
    ConstitutionSettings,
    CurriculumSettings,
    DataSettings,
    EvalSettings,
    ModelSettings,
    PPOSettings,
    ReportSettings,
    RewardModelSettings,
    RewardSettings,
    SFTSettings,
    TestbedSettings,
    _Strict,
)


class Config(_Strict):
    name: str = "default"
    seed: int = 0
    run_dir: str | None = None
    """Where every stage writes; default ``runs/<name>``."""
    policy: ModelSettings
    data: DataSettings = Field(default_factory=DataSettings)
    testbed: TestbedSettings | None = None
    sft: SFTSettings = Field(default_factory=lambda: SFTSettings(enabled=False))
    reward: RewardSettings = Field(default_factory=RewardSettings)
    train_rm: RewardModelSettings = Field(default_factory=lambda: RewardModelSettings(enabled=False))
    ppo: PPOSettings = Field(default_factory=PPOSettings)
    curriculum: CurriculumSettings = Field(default_factory=CurriculumSettings)
    constitution: ConstitutionSettings = Field(default_factory=ConstitutionSettings)
    redteam: RedTeamSettings = Field(default_factory=RedTeamSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    labels: LabelSettings = Field(default_factory=LabelSettings)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError("name must be a plain folder name")
        return v

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.data.source == "testbed" and self.testbed is None:
            raise ValueError("data.source is 'testbed' but there is no testbed section")
        if not self.reward.judges:
            raise ValueError("reward.judges must list at least one judge")
        if self.ppo.stop_at_probe_toxic_rate is not None and not self.eval.extra_judges:
            raise ValueError("ppo.stop_at_probe_toxic_rate compares the probe's held-out toxic rate, which needs "
                             "judges the policy is not trained against: list them in eval.extra_judges")
        if self.redteam.judges is not None:
            known = [j.name for j in self.reward.judges] + [j.name for j in self.eval.extra_judges]
            unknown = [n for n in self.redteam.judges if n not in known]
            if unknown or not self.redteam.judges:
                raise ValueError(f"redteam.judges: {unknown or 'an empty list'} names no judge of reward.judges "
                                 f"or eval.extra_judges ({', '.join(known)})")
        if self.redteam.rounds and not self.redteam.enabled:
            raise ValueError("redteam.rounds trains in `detoxrl run`, where the redteam stage runs only with "
                             "redteam.enabled: set redteam.enabled: true (or redteam.rounds: 0)")
        return self

    # ---------------------------------------------------------------------------------------------
    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def path(self, template: str) -> Path:
        """Resolve a path that may contain ``{run_dir}``."""
        return Path(template.replace("{run_dir}", str(self.run_path)))

    def resolve(self, template: str) -> str:
        """Like :meth:`path` for strings that may be hub ids: only ``{run_dir}`` is replaced."""
        return template.replace("{run_dir}", str(self.run_path))

    def seed_for(self, stage_seed: int | None) -> int:
        return self.seed if stage_seed is None else stage_seed

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
