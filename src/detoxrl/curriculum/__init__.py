"""Curriculum learning: tiers and difficulty scores per prompt, pacing functions, and prompt samplers with state."""

from detoxrl.curriculum.difficulty import (
    curriculum_scores,
    difficulty_for,
    from_column,
    from_judge,
    from_rewards,
    rank_normalize,
)
from detoxrl.curriculum.pacing import linear, sqrt_competence, stage_competence, step_stages
from detoxrl.curriculum.sampler import CurriculumSampler, PromptSampler, UniformSampler, make_sampler
from detoxrl.curriculum.tiers import TIERS, prompt_tiers, tier_levels

__all__ = [
    "CurriculumSampler", "PromptSampler", "UniformSampler", "make_sampler",
    "curriculum_scores", "difficulty_for", "from_column", "from_judge", "from_rewards", "rank_normalize",
    "linear", "sqrt_competence", "stage_competence", "step_stages",
    "TIERS", "prompt_tiers", "tier_levels",
]
