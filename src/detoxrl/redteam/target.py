"""The target of an attack: a policy that answers prompts and the judges that score its answers.

:class:`Target` counts its generations (the budget of every method is counted in them), answers a batch
of dialogues with the configured decoding and a seed per batch, and scores every response with every
judge — toxicity, the reward-scale score and the per-dimension scores.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

from detoxrl.config import GenerationSettings
from detoxrl.data.prompts import fill_template
from detoxrl.models.generation import generate_responses
from detoxrl.redteam.cases import JudgeScore
from detoxrl.utils import chunks


def _accepts_prompts(judge) -> bool:
    try:
        return "prompts" in inspect.signature(judge.score).parameters
    except (TypeError, ValueError):
        return False


def judge_all(judges: Sequence, responses: list[str], prompts: list[str]) -> list[dict[str, JudgeScore]]:
    """Every judge's scores of every response: ``[{judge name: JudgeScore}]`` in response order."""
    out: list[dict[str, JudgeScore]] = [{} for _ in responses]
    for judge in judges:
        res = judge.score(responses, prompts) if _accepts_prompts(judge) else judge.score(responses)
        dims = {d: v.tolist() for d, v in res.dimensions.items()}
        for i, (t, s) in enumerate(zip(res.toxicity.tolist(), res.score.tolist())):
            out[i][str(judge.name)] = JudgeScore(float(t), float(s), {d: float(v[i]) for d, v in dims.items()})
    return out


@dataclass
class Target:
    policy: object  # detoxrl.models.loading.LoadedPolicy
    judges: list  # built judges (.name, .threshold, .score)
    generation: GenerationSettings
    template: str
    max_prompt_tokens: int
    batch_size: int = 64
    seed: int = 0
    generations: int = 0
    on_batch: object = None
    thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.thresholds:
            self.thresholds = {str(j.name): float(j.threshold) for j in self.judges}

    def prompts_for(self, texts: Sequence[str]) -> list[str]:
        return [fill_template(self.template, t) for t in texts]

    def respond(self, prompts: list[str]) -> list[str]:
        """The target's responses, ``batch_size`` at a time; each call advances the generation count."""
        out: list[str] = []
        for batch in chunks(prompts, self.batch_size):
            seed = (self.seed * 1_000_003 + self.generations) % (2**31 - 1)
            g = generate_responses(self.policy, batch, self.generation, max_prompt_tokens=self.max_prompt_tokens,
                                   seed=seed)
            out += g.texts
            self.generations += len(batch)
            if self.on_batch:
                self.on_batch(len(batch))
        return out

    def attack(self, texts: Sequence[str]) -> tuple[list[str], list[str], list[dict[str, JudgeScore]]]:
        """Prompts, responses and judge scores for ``texts`` (dialogues)."""
        prompts = self.prompts_for(texts)
        responses = self.respond(prompts)
        return prompts, responses, judge_all(self.judges, responses, prompts)
