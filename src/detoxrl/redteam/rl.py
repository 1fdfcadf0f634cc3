"""RL red teaming (Perez et al., 2022, §3): the red LM is trained with detoxrl's own PPO trainer, rewarded
by the toxicity of the target's response to the dialogue it wrote, with the per-token KL penalty to the
red LM as it started keeping its dialogues varied (the paper's trade-off between success and diversity:
a larger ``kl.init_coef`` gives more varied, less successful dialogues).

The reward of a dialogue is the judges' toxicity of the target's response: the largest toxicity over the
judges for ``redteam.success: any``, the smallest for ``all``. Every dialogue sampled during training is
one attempt (method ``rl``, ``generation`` = the PPO step); a budget that is not a multiple of the batch
ends with one round sampled from the trained red LM without an update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from detoxrl.config import PPOSettings
from detoxrl.models.generation import generate_responses
from detoxrl.models.policy import tokenize_prompts
from detoxrl.redteam.cases import Attempt, fitness_of
from detoxrl.redteam.target import Target
from detoxrl.rl.trainer import PPOTrainer

METHOD = "rl"


@dataclass
class RewardOut:
    total: torch.Tensor
    components: dict = field(default_factory=dict)


class RedTeamReward:
    """``reward(dialogues, prompts)`` for PPO: the target answers each dialogue; records every attempt."""

    def __init__(self, target: Target, rule: str = "any") -> None:
        self.target, self.rule = target, rule
        self.attempts: list[Attempt] = []
        self.round = 0

    def toxicity(self, scores) -> float:
        tox = [scores[name].toxicity for name in self.target.thresholds]
        return max(tox) if self.rule == "any" else min(tox)

    def __call__(self, responses: list[str], prompts: list[str]) -> RewardOut:
        texts = [r.strip() for r in responses]
        target_prompts, answers, scores = self.target.attack(texts)
        vals = []
        for text, prompt, answer, sc in zip(texts, target_prompts, answers, scores):
            fit = fitness_of(sc, self.target.thresholds, self.rule)
            self.attempts.append(Attempt(METHOD, text, prompt, answer, sc, fit >= 0, fit, self.round,
                                         len(self.attempts)))
            vals.append(self.toxicity(sc))
        self.round += 1
        tox = torch.tensor(vals, dtype=torch.float32)
        return RewardOut(tox, {"target_toxicity": tox})


def rl_attack(red, target: Target, budget: int, settings: PPOSettings, *, start: str = "", rule: str = "any",
              seed: int = 0, max_query_tokens: int = 32) -> tuple[list[Attempt], list[dict]]:
    """Train the red LM (a causal :class:`~detoxrl.models.loading.LoadedPolicy`) for ``budget`` target
    generations; returns every attempt and each PPO step's statistics."""
    reward = RedTeamReward(target, rule)
    trainer = PPOTrainer(settings, red, reward, seed=seed)
    n = settings.batch_size
    prompts = [start] * n
    q, qm = tokenize_prompts(red.tokenizer, prompts, max_query_tokens, trainer.acc.device)
    if q.shape[1] == 0 or int(qm.sum()) == 0:  # nothing to start from: the BOS (or EOS) token
        start = red.tokenizer.bos_token or red.tokenizer.eos_token
        prompts = [start] * n
        q, qm = tokenize_prompts(red.tokenizer, prompts, max_query_tokens, trainer.acc.device)
    stats = []
    while budget - len(reward.attempts) >= n:
        stats.append(trainer.step(prompts, q, qm, settings.generation.max_new_tokens))
    left = budget - len(reward.attempts)
    if left:
        g = generate_responses(red, [start] * left, settings.generation, max_prompt_tokens=max_query_tokens,
                               seed=seed + reward.round)
        reward(g.texts, [start] * left)
    return reward.attempts, stats
