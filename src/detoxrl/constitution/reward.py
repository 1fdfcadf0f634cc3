"""The constitution inside PPO: every response is checked against every principle, violations are
penalised and logged per principle, and violating responses are revised into training data.

For response ``i``, principles ``p`` with weights ``w_p`` and ``λ = constitution.violation_weight``::

    total_i = base_i − λ · Σ_p w_p · v_{p,i}          v_{p,i} = 1 if response i violates p, else 0

``components`` keep the base reward's terms and add

- ``constitution/<id>``: ``v_{p,i}`` (its batch mean, logged as ``reward/constitution/<id>``, is the
  violation rate of the principle);
- ``constitution_penalty``: ``−λ Σ_p w_p v_{p,i}`` (the base terms plus this one add up to ``total``);
- ``constitution_revised``: 1 where an accepted revision was made (not with ``revision: none``).

The responses PPO learns from are the policy's own (their log-probabilities are the policy's); the
accepted revisions go to ``{constitution.output_dir}/preferences.jsonl`` and ``sft_pairs.jsonl``
(:mod:`~detoxrl.constitution.records`), the data of Constitutional AI's supervised and preference
phases. Judges the reward already ran are not run again: their results are reused for the full
responses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml
from torch import Tensor

from detoxrl.config import Config
from detoxrl.constitution.engine import ConstitutionEngine
from detoxrl.constitution.principles import Constitution
from detoxrl.constitution.records import RevisionRecorder
from detoxrl.constitution.revise import Revision
from detoxrl.models.loading import LoadedPolicy
from detoxrl.utils import atomic_write_text


@dataclass
class ConstitutionalOutput:
    """The base reward's output with the constitution's penalty; other attributes come from ``base``."""

    total: Tensor
    components: dict[str, Tensor]
    base: Any
    violations: dict[str, Tensor] = field(default_factory=dict)
    revisions: list[Revision] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.total.shape[0])

    def __getattr__(self, name: str):
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def explain(self, i: int) -> str:
        """The base reward's explanation (if it has one) and the principles response ``i`` violates."""
        head = self.base.explain(i) if hasattr(self.base, "explain") else f"reward {float(self.base.total[i]):+.3f}"
        viol = [p for p, v in self.violations.items() if bool(v[i])]
        pen = float(self.components.get("constitution_penalty", torch.zeros(len(self)))[i])
        return f"{head} | constitution {pen:+.3f} [{', '.join(viol) or 'no violation'}] → {float(self.total[i]):+.3f}"


class ConstitutionalReward:
    """``reward_fn(responses, prompts)`` of the base reward, with the constitution applied (module doc).

    Attributes it does not have (``judges``, ``weights``, ``state_dict``…) are the base reward's.
    """

    def __init__(self, reward: Callable, engine: ConstitutionEngine, *, violation_weight: float = 1.0,
                 recorder: RevisionRecorder | None = None) -> None:
        self.reward = reward
        self.engine = engine
        self.violation_weight = float(violation_weight)
        self.recorder = recorder
        self.batches = 0

    def __getattr__(self, name: str):
        if name in ("reward", "engine"):
            raise AttributeError(name)
        return getattr(self.reward, name)

    @property
    def constitution(self) -> Constitution:
        return self.engine.constitution

    def attach_policy(self, policy: LoadedPolicy) -> None:
        """Critique, revise and resample with ``policy`` (e.g. the live PPO policy) from now on."""
        self.engine.critic.attach(policy)

    def __call__(self, responses: Sequence[str], prompts: Sequence[str] | None = None) -> ConstitutionalOutput:
        responses = list(responses)
        prompts = list(prompts) if prompts is not None else [""] * len(responses)
        out = self.reward(responses, prompts)
        self.batches += 1
        cache = getattr(out, "per_judge", None)
        verdicts, revisions = self.engine.check_and_revise(responses, prompts, cache=cache)
        base_total = out.total.detach().float()
        penalty = (self.violation_weight * verdicts.weighted(self.engine.checker.weights)).to(base_total.device)
        components = {k: v for k, v in getattr(out, "components", {}).items()}
        for pid, v in verdicts.violations.items():
            components[f"constitution/{pid}"] = v.float().to(base_total.device)
        components["constitution_penalty"] = -penalty + 0.0  # + 0.0: no "-0.000"
        if self.engine.reviser.mode != "none":
            revised = torch.zeros(len(responses))
            for r in revisions:
                revised[r.index] = float(r.accepted)
            components["constitution_revised"] = revised.to(base_total.device)
        if self.recorder is not None:
            self.recorder.write(revisions, batch=self.batches)
        return ConstitutionalOutput(total=base_total - penalty, components=components, base=out,
                                    violations=verdicts.violations, revisions=revisions)


def with_constitution(reward: Callable, cfg: Config, device: str | torch.device = "cpu", *,
                      constitution: Constitution | str | None = None,
                      policy: LoadedPolicy | None = None) -> ConstitutionalReward:
    """Wrap ``reward`` (e.g. a :class:`~detoxrl.rewards.composite.CompositeReward`) with the
    constitution of ``cfg.constitution``; the reward's judges are reused by name."""
    cs = cfg.constitution
    engine = ConstitutionEngine.from_config(cfg, device, constitution=constitution,
                                            judges=getattr(reward, "judges", None) or (), policy=policy)
    recorder = None
    out_dir = cfg.path(cs.output_dir)
    if cs.record and engine.reviser.mode != "none":
        recorder = RevisionRecorder(out_dir, template=cfg.data.prompt_template,
                                    text_column=cfg.data.text_column, target_column=cfg.sft.target_column)
    if cs.record and int(os.environ.get("RANK", "0")) == 0:
        # the constitution this run used, next to the data it produced
        data = engine.constitution.model_dump(mode="json", exclude={"source"})
        atomic_write_text(out_dir / "constitution.yaml",
                          f"# from {engine.constitution.source}\n"
                          + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return ConstitutionalReward(reward, engine, violation_weight=cs.violation_weight, recorder=recorder)
