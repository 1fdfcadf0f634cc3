"""The figures one PPO step returns (:meth:`detoxrl.rl.trainer.PPOTrainer.step`), gathered over every rank
in the same order on each, so that data-parallel runs log the same numbers everywhere."""

from __future__ import annotations

import torch

from detoxrl.rl.core import explained_variance, masked_mean
from detoxrl.rl.rollout import Rollout


def step_statistics(tr, ro: Rollout, step_s: float) -> dict:
    """The step's figures; the KL controller of ``tr`` (a ``PPOTrainer``) adapts to the KL gathered over every
    rank."""
    mask = ro.response_mask
    mean_kl = tr._gather_mean((ro.kl * mask).sum(1))
    tr.kl_ctl.update(mean_kl, len(ro) * tr.acc.num_processes)
    n_tokens = float(mask.sum())
    dense = {}
    if tr.s.dense_scores:
        share = torch.tensor([ro.dense_rows / max(len(ro), 1)], device=ro.raw_scores.device)
        dense = {"reward/dense_share": tr._gather_mean(share)}
    return {
        "step": tr.step_count,
        "reward/mean": tr._gather_mean(ro.raw_scores),
        "reward/std": float(tr.acc.gather(ro.raw_scores).std()) if len(ro) > 1 else 0.0,
        "reward/normalized_mean": tr._gather_mean(ro.scores),
        **dense,
        "kl/mean": mean_kl,
        "kl/coef": float(tr.kl_ctl.value),
        "reward/non_score": tr._gather_mean((-tr.kl_ctl.value * ro.kl * mask).sum(1)),
        "value/explained_variance": float(explained_variance(ro.values, ro.returns, mask)),
        "value/mean": float(masked_mean(ro.values, mask)),
        "returns/mean": float(masked_mean(ro.returns, mask)),
        "response/length": tr._gather_mean(mask.sum(1)),
        "response/eos_share": tr._gather_mean(ro.has_eos.float()),
        "perf/step_s": step_s,
        "perf/tokens_per_s": n_tokens * tr.acc.num_processes / step_s,
        **{f"perf/{k}": v for k, v in ro.timings.items()},
    }


def component_stats(tr, ro: Rollout) -> dict:
    """Each reward term's batch mean; the same gathers in the same order on every rank. Constitution terms
    keep their own prefix (the report plots them per principle)."""
    return {(name if name.startswith("constitution/") else f"reward/{name}"): tr._gather_mean(comp)
            for name, comp in sorted(ro.components.items())}
