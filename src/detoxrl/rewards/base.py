"""The judge interface: what every toxicity judge returns and how it is called.

A judge maps a batch of texts to a :class:`JudgeResult`:

- ``score``      — the judge's reward-scale score, higher = better (less toxic); for Meta's hate-speech
  model this is the ``nothate`` logit, exactly as in the seed recipe;
- ``toxicity``   — a probability-like toxicity in [0, 1], higher = more toxic; a text counts as toxic
  for this judge when ``toxicity >= judge.threshold``;
- ``dimensions`` — toxicity in [0, 1] for each dimension of :data:`detoxrl.config.DIMENSIONS` that the
  judge covers (``hate``, ``harassment``, ``discrimination``, ``profanity``);
- ``severity``   — how bad the text is, in [0, 1].

Subclasses implement :meth:`Judge._score_batch` on one batch; :meth:`Judge.score` does batching,
``torch.inference_mode``, empty-text handling and the concatenation.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class JudgeResult:
    """Scores of one judge for a batch of ``B`` texts (every tensor has shape ``[B]``, float32, CPU)."""

    judge: str
    score: Tensor
    toxicity: Tensor
    dimensions: dict[str, Tensor] = field(default_factory=dict)
    severity: Tensor | None = None
    threshold: float = 0.5
    graded: bool = False
    """True when ``severity`` is the judge's own grade (severity labels such as toxic-bert's
    ``severe_toxic``), not its toxicity repeated: graded judges decide a response's severity tier."""

    def __post_init__(self) -> None:
        if self.severity is None:
            self.severity = self.toxicity.clone()

    def __len__(self) -> int:
        return int(self.score.shape[0])

    @property
    def toxic(self) -> Tensor:
        """Boolean ``[B]``: ``toxicity >= threshold``."""
        return self.toxicity >= self.threshold

    @property
    def finite(self) -> Tensor:
        """Boolean ``[B]``: every number this judge produced for the text is finite."""
        ok = torch.isfinite(self.score) & torch.isfinite(self.toxicity) & torch.isfinite(self.severity)
        for v in self.dimensions.values():
            ok &= torch.isfinite(v)
        return ok

    @staticmethod
    def concat(parts: Sequence[JudgeResult]) -> JudgeResult:
        """Join per-batch results (all from the same judge) into one."""
        first = parts[0]
        return JudgeResult(
            judge=first.judge,
            score=torch.cat([p.score for p in parts]),
            toxicity=torch.cat([p.toxicity for p in parts]),
            dimensions={d: torch.cat([p.dimensions[d] for p in parts]) for d in first.dimensions},
            severity=torch.cat([p.severity for p in parts]),
            threshold=first.threshold,
            graded=first.graded,
        )

    @staticmethod
    def empty(judge: str, dimensions: Sequence[str], threshold: float = 0.5, graded: bool = False) -> JudgeResult:
        z = torch.zeros(0)
        return JudgeResult(judge, z, z.clone(), {d: z.clone() for d in dimensions}, z.clone(), threshold, graded)


def prob_score(p_good: Tensor, kind: str, eps: float = 1e-6) -> Tensor:
    """Turn the probability that a text is clean into a reward-scale score.

    ``prob``: ``q``;  ``logprob``: ``log q``;  ``logit``: ``log q − log(1 − q)``, with ``q`` clamped to
    ``[eps, 1 − eps]`` for the logarithms.
    """
    if kind == "prob":
        return p_good
    q = p_good.clamp(eps, 1 - eps)
    if kind == "logprob":
        return q.log()
    if kind == "logit":
        return q.log() - (1 - q).log()
    raise ValueError(f"unknown score kind {kind!r}")


SMALL_MODEL_PARAMETERS = 20_000_000


def cpu_threads_for(model, device: str | torch.device = "cpu") -> int | None:
    """Intra-op threads for a model on CPU: 1 for small models (< 20 M parameters), None (leave
    torch's setting) otherwise, on GPUs, or when ``OMP_NUM_THREADS`` is set.

    The matrices of a small model are too small to gain from several threads, and several threads
    slow down many times over when the cores are shared with other work (measured: a 0.2 M-parameter
    judge scored 1600 texts/s on one thread and 285 on two while the two cores were busy).
    """
    if torch.device(device).type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return None
    if sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS:
        return 1
    return None


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (``None``: unchanged), then restore the setting."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def truncate_words(text: str, max_words: int) -> str:
    """The first ``max_words`` whitespace-separated words of ``text`` (the text itself if shorter)."""
    if len(text) <= max_words:  # cannot hold more words than characters
        return text
    m = re.match(rf"\s*(?:\S+\s+){{{max_words}}}", text)
    return text if m is None else text[: m.end()].rstrip()


class Judge(abc.ABC):
    """A toxicity judge. Subclasses set the attributes and implement :meth:`_score_batch`."""

    name: str
    dimensions: tuple[str, ...] = ()
    threshold: float = 0.5
    batch_size: int = 64
    max_length: int = 512
    threads: int | None = None
    """Intra-op CPU threads while scoring (None: torch's current setting)."""

    @abc.abstractmethod
    def _score_batch(self, texts: list[str], prompts: list[str] | None) -> JudgeResult:
        """Score one batch (at most ``batch_size`` texts; empty strings possible)."""

    def score(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> JudgeResult:
        """Score ``texts`` in batches of ``batch_size`` under ``torch.inference_mode``.

        ``prompts`` (same length as ``texts``) are given to judges that score prompt and response
        together (reward models trained on rankings); the others ignore them. ``None`` entries are
        treated as empty strings.
        """
        texts = ["" if t is None else str(t) for t in texts]
        if prompts is not None:
            prompts = ["" if p is None else str(p) for p in prompts]
            if len(prompts) != len(texts):
                raise ValueError(f"judge {self.name}: {len(texts)} texts but {len(prompts)} prompts")
        if not texts:
            return JudgeResult.empty(self.name, self.dimensions, self.threshold)
        parts = []
        with torch.inference_mode(), torch_threads(self.threads):
            for i in range(0, len(texts), self.batch_size):
                batch_prompts = None if prompts is None else prompts[i : i + self.batch_size]
                parts.append(self._score_batch(texts[i : i + self.batch_size], batch_prompts))
        out = JudgeResult.concat(parts)
        # Results leave inference mode as ordinary float32 CPU tensors.
        out.score = out.score.detach().float().cpu().clone()
        out.toxicity = out.toxicity.detach().float().cpu().clone()
        out.severity = out.severity.detach().float().cpu().clone()
        out.dimensions = {d: v.detach().float().cpu().clone() for d, v in out.dimensions.items()}
        return out

    def __call__(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> JudgeResult:
        return self.score(texts, prompts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dimensions={list(self.dimensions)})"
