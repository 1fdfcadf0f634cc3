"""A fixed share of every batch from a second set of prompts (``ppo.redteam_share``: the red team's finds),
the rest from the sampler the curriculum settings describe (:func:`detoxrl.curriculum.sampler.make_sampler`)."""

from __future__ import annotations

from collections.abc import Sequence

from detoxrl.config import CurriculumSettings
from detoxrl.curriculum.sampler import STATE_VERSION, UniformSampler, _check_state, make_sampler


class MixedSampler:
    """A fixed share of every batch from a second set of prompts, the rest from another sampler.

    ``extra_index`` (e.g. the red team's prompts, ``ppo.redteam_share``) are drawn by a
    :class:`UniformSampler` of their own, ``round(share × batch)`` per batch; ``base`` draws the rest from
    the prompts ``base_index`` (its own indices map through it). The batch lists the extra prompts first.
    :meth:`observe` feeds the base sampler (a curriculum paces on it); :meth:`log_stats` adds
    ``curriculum/share_redteam`` to the base's figures, which describe its part of the batch.
    """

    def __init__(self, base, base_index: Sequence[int], extra_index: Sequence[int], share: float, seed: int) -> None:
        if not extra_index or not base_index:
            raise ValueError(f"a mixed batch needs prompts on both sides ({len(extra_index)} extra, "
                             f"{len(base_index)} others)")
        if not 0 < share < 1:
            raise ValueError(f"the extra prompts' share of a batch must be in (0, 1), got {share}")
        self.base, self.share = base, float(share)
        self.base_index, self.extra_index = [int(i) for i in base_index], [int(i) for i in extra_index]
        self.extra = UniformSampler(len(self.extra_index), seed + 1)
        self.n = len(self.base_index) + len(self.extra_index)
        self.last_batch: list[int] = []
        self._last_k = 0

    def next_batch(self, batch_size: int) -> list[int]:
        k = min(batch_size, int(round(self.share * batch_size)))
        extra = [self.extra_index[i] for i in self.extra.next_batch(k)] if k else []
        rest = [self.base_index[i] for i in self.base.next_batch(batch_size - k)] if batch_size > k else []
        self._last_k = k
        self.last_batch = extra + rest
        return self.last_batch

    def observe(self, step: int, rewards: Sequence[float]) -> None:
        self.base.observe(step, rewards)

    def log_stats(self) -> dict:
        n = len(self.last_batch)
        return {**self.base.log_stats(), "curriculum/share_redteam": self._last_k / n if n else 0.0}

    def state_dict(self) -> dict:
        return {"kind": "mixed", "version": STATE_VERSION, "n": self.n, "share": self.share, "k": self._last_k,
                "base": self.base.state_dict(), "extra": self.extra.state_dict(), "last_batch": list(self.last_batch)}

    def load_state_dict(self, state: dict) -> None:
        _check_state(state, "mixed", self.n)
        self.base.load_state_dict(state["base"])
        self.extra.load_state_dict(state["extra"])
        self._last_k = int(state.get("k", 0))
        self.last_batch = [int(i) for i in state.get("last_batch", [])]


def make_mixed_sampler(settings: CurriculumSettings, is_extra: Sequence[bool], share: float, total_steps: int,
                       seed: int, difficulty: Sequence[float] | None = None,
                       tiers: Sequence[str] | None = None) -> MixedSampler:
    """:class:`MixedSampler`: ``share`` of every batch from the prompts ``is_extra`` marks, the rest from the
    sampler ``settings`` describes over the others (their ``difficulty`` and ``tiers``)."""
    base_index = [i for i, e in enumerate(is_extra) if not e]
    extra_index = [i for i, e in enumerate(is_extra) if e]
    def sub(xs):
        return None if xs is None else [xs[i] for i in base_index]
    base = make_sampler(settings, len(base_index), total_steps, seed, difficulty=sub(difficulty), tiers=sub(tiers))
    return MixedSampler(base, base_index, extra_index, share, seed)
