"""Prompt samplers: which prompts each PPO step trains on.

The PPO loop talks to a :class:`PromptSampler` only:

1. ``idx = sampler.next_batch(batch_size)`` — indices into the prompt list;
2. after the step, ``sampler.observe(step, rewards)`` with the batch's rewards;
3. ``sampler.log_stats()`` — figures to log for the batch just drawn;
4. ``sampler.state_dict()`` / ``load_state_dict()`` — plain JSON, enough for a resumed run to draw
   exactly the batches an uninterrupted run would have drawn.

:class:`UniformSampler` shuffles the prompts once per pass (no curriculum). :class:`CurriculumSampler`
orders them by difficulty and at step ``t`` draws only from the easiest share ``c(t)`` (the
*competence*), which grows by a pacing function of the step or, in ``self_paced`` mode, by stages
that advance when the policy's recent reward passes a threshold; in ``tiers`` mode one difficulty level
(tier) opens per stage.

Both log, for the batch just drawn, its mean difficulty and the share of each difficulty bucket and,
when the prompts' tiers are known (``curriculum.difficulty: tier``), ``curriculum/share_clean``,
``curriculum/share_ambiguous``, ``curriculum/share_harmful`` and ``curriculum/open_level`` (the highest
difficulty level among the eligible prompts: 0 clean … 3 harmful severe), so a uniform arm and a
curriculum arm compare on the same figures.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from detoxrl.config import CurriculumSettings
from detoxrl.curriculum import pacing as P
from detoxrl.curriculum.difficulty import rank_normalize
from detoxrl.curriculum.tiers import TIERS
from detoxrl.errors import CheckpointError

STATE_VERSION = 1


@runtime_checkable
class PromptSampler(Protocol):
    """What the PPO loop needs from a sampler."""

    def next_batch(self, batch_size: int) -> list[int]:
        """Indices (into the prompt list) of the next batch."""

    def observe(self, step: int, rewards: Sequence[float]) -> None:
        """Called after each PPO step with that step's rewards (per prompt, or their mean)."""

    def state_dict(self) -> dict:
        """JSON-serialisable state, including the random generator's."""

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output; later batches equal an uninterrupted run's."""

    def log_stats(self) -> dict:
        """Figures about the last batch (``curriculum/...``)."""


# --------------------------------------------------------------------------------------- helpers
def _rng_state(rng: np.random.Generator) -> dict:
    return copy.deepcopy(rng.bit_generator.state)


def _set_rng_state(rng: np.random.Generator, state: dict) -> None:
    try:
        rng.bit_generator.state = copy.deepcopy(state)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"sampler state: invalid random generator state ({exc})") from None


def _finite_mean(values: Sequence[float]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(vals) / len(vals) if vals else None


class _BatchStats:
    """Difficulty statistics of a batch: mean, the share of each difficulty bucket (0 = easiest) and,
    with ``tiers``, the share of each tier."""

    def __init__(self, difficulty: Sequence[float] | None, n_buckets: int, tiers: Sequence[str] | None = None) -> None:
        self.n_buckets = n_buckets
        self.tiers = _tier_codes(tiers, len(difficulty) if difficulty is not None else None)
        if difficulty is None:
            self.values = None
            return
        self.values = np.asarray(difficulty, dtype=np.float64)
        level = rank_normalize(self.values)
        self.bucket = np.minimum((level * n_buckets).astype(np.int64), n_buckets - 1)

    def __call__(self, batch: Sequence[int]) -> dict[str, float]:
        if not len(batch):
            return {}
        idx = np.asarray(batch, dtype=np.int64)
        out: dict[str, float] = {}
        if self.values is not None:
            out["curriculum/mean_difficulty"] = float(self.values[idx].mean())
            counts = np.bincount(self.bucket[idx], minlength=self.n_buckets)
            for b in range(self.n_buckets):
                out[f"curriculum/share_bucket{b}"] = float(counts[b] / len(idx))
        if self.tiers is not None:
            counts = np.bincount(self.tiers[idx], minlength=len(TIERS))
            for k, name in enumerate(TIERS):
                out[f"curriculum/share_{name}"] = float(counts[k] / len(idx))
        return out


def _tier_codes(tiers: Sequence[str] | None, n: int | None) -> np.ndarray | None:
    """Tier names as codes 0, 1, 2 (:data:`~detoxrl.curriculum.tiers.TIERS`); checks the names and count."""
    if tiers is None:
        return None
    if n is not None and len(tiers) != n:
        raise ValueError(f"{len(tiers)} tiers for {n} prompts")
    bad = [t for t in tiers if t not in TIERS]
    if bad:
        raise ValueError(f"unknown tier {bad[0]!r}; known: {list(TIERS)}")
    return np.asarray([TIERS.index(t) for t in tiers], dtype=np.int64)


def _check_state(state: dict, kind: str, n: int) -> None:
    if not isinstance(state, dict) or state.get("kind") != kind:
        got = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"sampler state is for a {got!r} sampler, but this run uses a {kind!r} sampler "
                              "(did curriculum.enabled change since the checkpoint?)")
    if int(state.get("n", -1)) != n:
        raise CheckpointError(f"sampler state is for {state.get('n')} prompts, but this run has {n} "
                              "(did the data settings change since the checkpoint?)")


# ------------------------------------------------------------------------------------- uniform
class UniformSampler:
    """Every prompt once per pass, in an order reshuffled at the start of each pass.

    A batch that crosses the end of a pass is completed from the next pass. Deterministic for a seed.
    ``difficulty`` and ``tiers`` (optional) only feed :meth:`log_stats`, so that runs with and without
    a curriculum can be compared on the same figures.
    """

    def __init__(self, n: int, seed: int, difficulty: Sequence[float] | None = None, n_buckets: int = 4,
                 tiers: Sequence[str] | None = None) -> None:
        if n <= 0:
            raise ValueError("UniformSampler needs at least one prompt")
        if tiers is not None and len(tiers) != n:
            raise ValueError(f"{len(tiers)} tiers for {n} prompts")
        self.n = int(n)
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._stats = _BatchStats(difficulty, n_buckets, tiers)
        # everything is open: the highest level present (with tiers known, the difficulty is the level)
        self._open_level = (int(max(difficulty)) if difficulty is not None and tiers is not None else None)
        self.epoch = -1
        self.t = 0
        self.last_batch: list[int] = []
        self.last_reward: float | None = None
        self._new_pass()

    def _new_pass(self) -> None:
        self._pass_rng = _rng_state(self._rng)
        self._perm = self._rng.permutation(self.n)
        self._pos = 0
        self.epoch += 1

    def next_batch(self, batch_size: int) -> list[int]:
        out: list[int] = []
        while len(out) < batch_size:
            if self._pos >= self.n:
                self._new_pass()
            take = min(batch_size - len(out), self.n - self._pos)
            out.extend(int(i) for i in self._perm[self._pos: self._pos + take])
            self._pos += take
        self.t += 1
        self.last_batch = out
        return out

    def observe(self, step: int, rewards: Sequence[float]) -> None:  # noqa: ARG002
        m = _finite_mean(rewards)
        if m is not None:
            self.last_reward = m

    def log_stats(self) -> dict:
        out = {"curriculum/competence": 1.0, "curriculum/epoch": float(self.epoch), **self._stats(self.last_batch)}
        if self._open_level is not None:
            out["curriculum/open_level"] = self._open_level
        return out

    def state_dict(self) -> dict:
        # The pass's order is re-derived from the generator state saved at the start of the pass.
        return {"kind": "uniform", "version": STATE_VERSION, "n": self.n, "epoch": self.epoch, "pos": self._pos,
                "t": self.t, "pass_rng": copy.deepcopy(self._pass_rng), "last_batch": list(self.last_batch),
                "last_reward": self.last_reward}

    def load_state_dict(self, state: dict) -> None:
        _check_state(state, "uniform", self.n)
        _set_rng_state(self._rng, state["pass_rng"])
        self.epoch = int(state["epoch"]) - 1
        self._new_pass()  # regenerates this pass's order and advances the generator as it did then
        self._pos = int(state["pos"])
        self.t = int(state["t"])
        self.last_batch = [int(i) for i in state.get("last_batch", [])]
        self.last_reward = state.get("last_reward")


# ---------------------------------------------------------------------------------- curriculum
PACING_MODES = ("linear", "sqrt", "step", "self_paced", "tiers")


class CurriculumSampler:
    """Easiest prompts first: at step ``t`` a batch is drawn from the easiest ``⌈c(t)·n⌉`` prompts.

    Prompts are sorted by ``difficulty`` (0 = easy; ties broken by a seeded random order, so a large
    block of equal scores is not taken in file order). Each batch is a uniform draw without
    replacement from the eligible prompts (with replacement only if fewer prompts than the batch
    size are eligible).

    ``pacing``:
      - ``linear`` / ``sqrt`` — :func:`~detoxrl.curriculum.pacing.linear`,
        :func:`~detoxrl.curriculum.pacing.sqrt_competence` of the number of batches drawn so far,
        reaching 1 at ``T = full_at × total_steps``;
      - ``step`` — :func:`~detoxrl.curriculum.pacing.step_stages` with ``n_stages`` stages;
      - ``self_paced`` — ``n_stages`` stages with the competences of ``step``; the sampler moves to
        the next stage when the mean reward of the last ``window`` observed steps (all within the
        current stage) is strictly greater than ``reward_threshold``;
      - ``tiers`` — one stage per distinct difficulty value (level) present, ``L`` in all: stage
        ``k = stage_at(t, T, L)`` makes eligible exactly the prompts of the ``k + 1`` lowest levels
        (with the ``tier`` difficulty: clean, then ambiguous, harmful mild, harmful severe), so the last
        stage (everything) starts at ``T``; ``start_competence`` and ``n_stages`` play no part. With
        another difficulty the levels are its distinct values (a column of a few integer levels
        stages naturally; a continuous score gives one stage per distinct value);
      - a callable ``(t, T, c0) -> c``.

    ``tiers`` (optional, one name per prompt) adds the tier shares and the open level to
    :meth:`log_stats`.
    """

    def __init__(
        self,
        difficulty: Sequence[float],
        pacing: str | Callable[[float, float, float], float],
        total_steps: int,
        seed: int,
        *,
        start_competence: float = 0.2,
        full_at: float = 0.8,
        n_stages: int = 3,
        reward_threshold: float = 0.0,
        window: int = 5,
        n_buckets: int = 4,
        tiers: Sequence[str] | None = None,
    ) -> None:
        diff = np.asarray([float(d) for d in difficulty], dtype=np.float64)
        if diff.size == 0:
            raise ValueError("CurriculumSampler needs at least one prompt")
        if not np.isfinite(diff).all():
            raise ValueError(f"difficulty of prompt {int(np.flatnonzero(~np.isfinite(diff))[0])} is not finite")
        if isinstance(pacing, str) and pacing not in PACING_MODES:
            raise ValueError(f"unknown pacing {pacing!r}; known: {list(PACING_MODES)}")
        if not 0 < start_competence <= 1:
            raise ValueError("start_competence must be in (0, 1]")
        if window <= 0 or n_stages <= 0:
            raise ValueError("window and n_stages must be positive")
        self.n = int(diff.size)
        self.difficulty = diff
        self.pacing = pacing
        self.total_steps = int(total_steps)
        self.seed = int(seed)
        self.c0 = float(start_competence)
        self.full_at_step = float(full_at) * self.total_steps
        self.n_stages = int(n_stages)
        self.reward_threshold = float(reward_threshold)
        self.window = int(window)
        tiebreak = np.random.default_rng([self.seed, 1]).permutation(self.n)
        self.order = np.lexsort((tiebreak, diff))
        self._order_digest = hashlib.sha256(self.order.astype("<i8").tobytes()).hexdigest()[:16]
        self._rng = np.random.default_rng(self.seed)
        self._stats = _BatchStats(diff, n_buckets, tiers)
        self.has_tiers = tiers is not None
        # tiers pacing: prompts of level <= k, per stage k (a prefix of the order, which is sorted by level)
        self.level_counts = np.searchsorted(np.sort(diff), np.unique(diff), side="right").astype(np.int64)
        self.t = 0  # batches drawn so far
        self.stage = 0  # self-paced stage
        self.history: list[float] = []  # recent step rewards (within the current stage when self-paced)
        self.advanced_at: list[int] = []  # steps at which a self-paced stage was passed
        self.last_batch: list[int] = []
        self.last_competence = self.competence(0)
        self.last_eligible = self.eligible(0)

    # ------------------------------------------------------------------------------- schedule
    @property
    def staged(self) -> bool:
        return self.pacing in ("step", "self_paced", "tiers")

    def current_stage(self, t: int) -> int:
        if self.pacing == "self_paced":
            return self.stage
        if self.pacing == "step":
            return P.stage_at(t, self.full_at_step, self.n_stages)
        if self.pacing == "tiers":
            return P.stage_at(t, self.full_at_step, len(self.level_counts))
        return 0

    def eligible(self, t: int) -> int:
        """Number of prompts (easiest first) eligible when drawing the batch after ``t`` batches."""
        if self.pacing == "tiers":
            return int(self.level_counts[self.current_stage(t)])
        return self.n_eligible(self.competence(t))

    def competence(self, t: int) -> float:
        """Share of prompts (easiest first) eligible when drawing the batch after ``t`` batches."""
        T, c0 = self.full_at_step, self.c0
        if self.pacing == "tiers":
            return self.eligible(t) / self.n
        if callable(self.pacing):
            return float(min(1.0, max(0.0, self.pacing(t, T, c0))))
        if self.pacing == "linear":
            return P.linear(t, T, c0)
        if self.pacing == "sqrt":
            return P.sqrt_competence(t, T, c0)
        if self.pacing == "step":
            return P.step_stages(t, T, c0, self.n_stages)
        return P.stage_competence(self.stage, self.n_stages, c0)

    def n_eligible(self, competence: float) -> int:
        return min(self.n, max(1, math.ceil(competence * self.n - 1e-9)))

    # ------------------------------------------------------------------------------ protocol
    def next_batch(self, batch_size: int) -> list[int]:
        c = self.competence(self.t)
        k = self.eligible(self.t)
        picks = self._rng.choice(k, size=batch_size, replace=batch_size > k)
        out = [int(i) for i in self.order[picks]]
        self.t += 1
        self.last_batch = out
        self.last_competence = c
        self.last_eligible = k
        return out

    def observe(self, step: int, rewards: Sequence[float]) -> None:
        m = _finite_mean(rewards)
        if m is None:
            return
        self.history = (self.history + [m])[-self.window:]
        if (self.pacing == "self_paced" and self.stage < self.n_stages - 1
                and len(self.history) >= self.window
                and sum(self.history) / len(self.history) > self.reward_threshold):
            self.stage += 1
            self.history = []
            self.advanced_at.append(int(step))

    def log_stats(self) -> dict:
        out: dict[str, float] = {
            "curriculum/competence": float(self.last_competence),
            "curriculum/eligible": float(self.last_eligible),
        }
        if self.staged:
            out["curriculum/stage"] = float(self.current_stage(max(self.t - 1, 0)))
        if self.has_tiers:  # the eligible prompts are a prefix of the order, sorted by level
            out["curriculum/open_level"] = int(self.difficulty[self.order[self.last_eligible - 1]])
        if self.history:
            out["curriculum/recent_reward"] = float(sum(self.history) / len(self.history))
        out.update(self._stats(self.last_batch))
        return out

    def state_dict(self) -> dict:
        return {
            "kind": "curriculum", "version": STATE_VERSION, "n": self.n,
            "pacing": self.pacing if isinstance(self.pacing, str) else "callable",
            "order_digest": self._order_digest, "t": self.t, "stage": self.stage,
            "history": list(self.history), "advanced_at": list(self.advanced_at),
            "rng": _rng_state(self._rng), "last_batch": list(self.last_batch),
            "last_competence": self.last_competence, "last_eligible": self.last_eligible,
            "level_counts": self.level_counts.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        _check_state(state, "curriculum", self.n)
        pacing = self.pacing if isinstance(self.pacing, str) else "callable"
        if state.get("pacing") != pacing:
            raise CheckpointError(f"sampler state uses pacing {state.get('pacing')!r}, this run {pacing!r} "
                                  "(curriculum.pacing changed since the checkpoint)")
        if state.get("order_digest") != self._order_digest:
            raise CheckpointError("sampler state was made with a different difficulty order of the prompts "
                                  "(the prompts or their difficulty scores changed since the checkpoint)")
        if pacing == "tiers" and state.get("level_counts") != self.level_counts.tolist():
            raise CheckpointError(f"sampler state has {state.get('level_counts')} prompts up to each level, this run "
                                  f"{self.level_counts.tolist()} (the prompts' tiers changed since the checkpoint)")
        _set_rng_state(self._rng, state["rng"])
        self.t = int(state["t"])
        self.stage = int(state["stage"])
        self.history = [float(x) for x in state.get("history", [])]
        self.advanced_at = [int(x) for x in state.get("advanced_at", [])]
        self.last_batch = [int(i) for i in state.get("last_batch", [])]
        self.last_competence = float(state.get("last_competence", self.competence(self.t)))
        self.last_eligible = int(state.get("last_eligible", self.n_eligible(self.last_competence)))


# ------------------------------------------------------------------------------------- factory
def make_sampler(settings: CurriculumSettings, n_prompts: int, total_steps: int, seed: int,
                 difficulty: Sequence[float] | None = None,
                 tiers: Sequence[str] | None = None) -> UniformSampler | CurriculumSampler:
    """The sampler a :class:`~detoxrl.config.CurriculumSettings` describes (uniform when disabled);
    ``tiers`` (one name per prompt, when known) adds the tier shares to its figures."""
    if not settings.enabled:
        return UniformSampler(n_prompts, seed, difficulty=difficulty, tiers=tiers)
    if difficulty is None:
        raise ValueError("curriculum.enabled needs a difficulty score per prompt (see detoxrl.curriculum.difficulty)")
    if len(difficulty) != n_prompts:
        raise ValueError(f"{len(difficulty)} difficulty scores for {n_prompts} prompts")
    return CurriculumSampler(
        difficulty, settings.pacing, total_steps, seed,
        start_competence=settings.start_competence, full_at=settings.full_at, n_stages=settings.stages,
        reward_threshold=settings.reward_threshold, window=settings.window, tiers=tiers,
    )
