"""The composite reward: one number per response from several judges, by type and severity of toxicity.

For response ``i``, judges ``j`` (weight ``w_j`` = ``JudgeSettings.weight``), dimensions ``d`` (weight
``ω_d`` = ``reward.dimension_weights[d]``, 1 for a dimension not listed) and severity tiers ``t``
(``reward.severity_tiers``)::

    total_i = Σ_j w_j · s̃_{j,i}                      judge terms       "judge/<name>"
            − Σ_d ω_d · max_{j covers d} tox_{j,d,i}  dimension terms   "dim/<d>"
            − penalty(tier(max_j sev_{j,i}))          severity term     "severity_penalty"

- ``s_{j,i}`` is judge ``j``'s reward-scale score (higher = cleaner; the ``nothate`` logit for Meta's
  model); ``s̃ = s`` or, with ``reward.normalize``, ``s̃ = (s − μ_j) / σ_j`` with running mean and
  standard deviation of that judge's scores (updated with each batch before it is used).
- ``tox_{j,d,i}`` ∈ [0, 1] is judge ``j``'s toxicity in dimension ``d``; several judges covering one
  dimension are combined by ``max`` (the most alarmed judge decides). Judges with weight 0 still
  count here: a lexicon or profanity judge can penalise its dimension without adding a score.
- ``tier(v)`` is the tier with the largest ``min_severity ≤ v`` (none: no penalty); ``sev_{j,i}`` is
  judge ``j``'s severity in [0, 1], and the ``max`` runs over the judges that *grade* severity (their
  own severity labels, such as toxic-bert's ``severe_toxic``: ``JudgeResult.graded``) when any does,
  else over every judge (whose severity is then its toxicity). A single-label judge such as Meta's
  model says *whether* a text is hateful, not how badly; letting its ``p(hate) ≈ 1`` count as
  severity would put every hit in the top tier (:func:`response_severity`).

The named terms are returned in ``components`` and add up to ``total``.

Defaults (``RewardSettings``): every dimension weight 1, no severity tiers, no normalisation. So a
single judge of weight 1 gives ``total = score − Σ_d tox_d``; with Meta's model (``dimensions: {hate:
hate}``) that is ``logit(nothate) − p(hate)``. Setting ``dimension_weights`` to 0 (and no tiers)
gives exactly the seed recipe's reward, the ``nothate`` logit. The embedded default
(``configs/default.yaml``) sets weights and tiers for its two judges and says why.

Non-finite judge outputs are never hidden: such a response's ``total`` is NaN (the PPO trainer skips
the step) and ``n_nonfinite`` counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from detoxrl.config import DIMENSIONS, Config, RewardSettings, SeverityTier
from detoxrl.errors import ConfigError
from detoxrl.rewards.base import Judge, JudgeResult
from detoxrl.rewards.build import build_judges
from detoxrl.stats import RunningMoments, normalize_scores


# ---------------------------------------------------------------------------------- pure functions
def combine_dimensions(results: Sequence[JudgeResult]) -> dict[str, Tensor]:
    """``dim[d] = max_j tox_{j,d}`` over the judges that cover ``d`` (NaN propagates)."""
    out: dict[str, Tensor] = {}
    for d in DIMENSIONS:
        cols = [r.dimensions[d] for r in results if d in r.dimensions]
        if cols:
            out[d] = torch.stack(cols, 0).amax(0)
    return out


def response_severity(results: Sequence[JudgeResult]) -> Tensor:
    """Severity of each response: ``max`` over the judges that grade severity (``graded``), or over
    every judge when none does (NaN propagates)."""
    graded = [r for r in results if r.graded] or list(results)
    return torch.stack([r.severity for r in graded], 0).amax(0)


def severity_tier(severity: Tensor, tiers: Sequence[SeverityTier]) -> tuple[list[str | None], Tensor]:
    """Tier name and penalty per row: the tier with the largest ``min_severity <= severity``."""
    names: list[str | None] = [None] * len(severity)
    penalty = torch.zeros(len(severity))
    for tier in sorted(tiers, key=lambda t: t.min_severity):
        hit = severity >= tier.min_severity
        penalty = torch.where(hit, torch.tensor(float(tier.penalty)), penalty)
        for i in torch.nonzero(hit).flatten().tolist():
            names[i] = tier.name
    return names, penalty


# ---------------------------------------------------------------------------------------- output
@dataclass
class RewardOutput:
    """The composite reward of a batch; ``components`` add up to ``total``."""

    total: Tensor
    per_judge: dict[str, JudgeResult]
    components: dict[str, Tensor]
    dimensions: dict[str, Tensor] = field(default_factory=dict)
    severity: Tensor | None = None
    tiers: list[str | None] = field(default_factory=list)
    n_nonfinite: int = 0
    weights: dict[str, float] = field(default_factory=dict)
    dimension_weights: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.total.shape[0])

    def explain(self, i: int) -> str:
        """One line: the total and every term that makes it, per judge and dimension."""
        parts = []
        for name, r in self.per_judge.items():
            w = self.weights.get(name, 1.0)
            parts.append(f"{name} {float(r.score[i]):+.3f}×{w:g}")
        for d, v in self.dimensions.items():
            who = ",".join(n for n, r in self.per_judge.items() if d in r.dimensions)
            parts.append(f"{d} {float(v[i]):.2f} [{who}] {float(self.components[f'dim/{d}'][i]):+.3f}")
        sev = float(self.severity[i]) if self.severity is not None else float("nan")
        tier = self.tiers[i] if self.tiers else None
        parts.append(f"severity {sev:.2f}" + (f" → {tier} {float(self.components['severity_penalty'][i]):+.3f}"
                                               if tier else " → no tier"))
        flag = " NON-FINITE" if not torch.isfinite(self.total[i]) else ""
        return f"reward {float(self.total[i]):+.3f}{flag} = " + " | ".join(parts)


# ---------------------------------------------------------------------------------------- reward
class CompositeReward:
    """Callable ``(responses, prompts) -> RewardOutput`` combining judges (formula in the module doc)."""

    def __init__(self, judges: Sequence[Judge], weights: Sequence[float] | None = None,
                 settings: RewardSettings | None = None) -> None:
        if not judges:
            raise ConfigError("reward.judges must list at least one judge")
        names = [j.name for j in judges]
        if len(set(names)) != len(names):
            raise ConfigError(f"judge names must be unique; got {names}")
        self.judges = list(judges)
        self.weights = [1.0] * len(judges) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.judges):
            raise ValueError("one weight per judge")
        self.settings = settings or RewardSettings.model_construct(
            judges=[], dimension_weights={d: 1.0 for d in DIMENSIONS}, severity_tiers=[], normalize=False)
        self.dimension_weights = {d: float(self.settings.dimension_weights.get(d, 1.0)) for d in DIMENSIONS}
        self.moments = {j.name: RunningMoments() for j in self.judges}

    @classmethod
    def from_config(cls, cfg: Config, device: str | torch.device = "cpu") -> CompositeReward:
        """Build every judge of ``cfg.reward.judges`` and combine them as ``cfg.reward`` says."""
        judges = build_judges(cfg.reward.judges, cfg, device)
        return cls(judges, [j.weight for j in cfg.reward.judges], cfg.reward)

    @property
    def dimensions(self) -> tuple[str, ...]:
        covered = {d for j in self.judges for d in j.dimensions}
        return tuple(d for d in DIMENSIONS if d in covered)

    def __call__(self, responses: Sequence[str], prompts: Sequence[str] | None = None) -> RewardOutput:
        results = {j.name: j.score(responses, prompts) for j in self.judges}
        return self.combine(results)

    def combine(self, results: dict[str, JudgeResult], update_moments: bool = True) -> RewardOutput:
        """The composite reward from judge results already computed (keys: judge names).

        ``update_moments=False`` leaves the running statistics of ``reward.normalize`` as they are (a
        measurement, such as PPO's probe, that must not change what training sees)."""
        first = next(iter(results.values()))
        n = len(first)
        components: dict[str, Tensor] = {}
        finite = torch.ones(n, dtype=torch.bool)
        weights = {}
        for judge, w in zip(self.judges, self.weights):
            r = results[judge.name]
            finite &= r.finite
            s = r.score
            if self.settings.normalize:
                if update_moments:
                    self.moments[judge.name].update(s)
                s = normalize_scores(s, self.moments[judge.name])
            components[f"judge/{judge.name}"] = (w * s).float()
            weights[judge.name] = w
        dims = combine_dimensions(list(results.values()))
        for d, v in dims.items():
            components[f"dim/{d}"] = (-self.dimension_weights[d] * v + 0.0).float()  # + 0.0: no "-0.000"
        severity = response_severity(list(results.values()))
        tiers, penalty = severity_tier(severity, self.settings.severity_tiers)
        components["severity_penalty"] = -penalty + 0.0
        total = torch.stack(list(components.values()), 0).sum(0).float()
        total = torch.where(finite, total, torch.tensor(float("nan")))
        return RewardOutput(total=total, per_judge=results, components=components, dimensions=dims,
                            severity=severity, tiers=tiers, n_nonfinite=int((~finite).sum()),
                            weights=weights, dimension_weights=self.dimension_weights)

    def state_dict(self) -> dict:
        """Running normalisation statistics (to checkpoint with the policy)."""
        return {name: m.state_dict() for name, m in self.moments.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, s in state.items():
            if name in self.moments:
                self.moments[name].load_state_dict(s)
