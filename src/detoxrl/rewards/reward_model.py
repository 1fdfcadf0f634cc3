"""A reward model as a judge like any other (``reward.judges: [{type: reward_model, path: ...}]``).

``train-rm`` (rankings mode) trains a sequence classifier with one output ``r(x, y)`` on (prompt,
response) pairs and writes, beside the weights, :data:`RM_FILE` with what this judge needs:

- ``score_mean`` ``μ`` and ``score_std`` ``σ``: the mean and standard deviation of ``r`` over the
  training pairs' members (each pair's chosen and rejected response, so ``2P`` values). The judge's
  ``score`` is ``s = (r(x, y) − μ) / σ``: zero for a response as good as the average training
  response, in units of its spread, so a reward model's score sits on the scale the composite reward
  and PPO's score normalisation expect whatever offset and scale training happened to give ``r``.
- ``calibration`` ``{"a", "b"}``: a logistic (Platt) fit on the same pairs of ``P(worse | s) =
  σ(a + b·s)``, the probability that a response with score ``s`` is the *rejected* member of its pair
  (:func:`platt_fit`). The judge's ``toxicity`` (and severity) is that probability.

Why this calibration and not ``σ(−s)``: a reward model only ever learnt *better / worse*, so the one
probability its training data can support is "how likely is this response the worse one?". ``σ(−s)``
would fix the steepness at one standard deviation per logit whatever the model's quality; the fitted steepness
``b`` is steep for a model that separates its pairs well and flat (toxicity near 0.5, an honest "cannot
tell") for a weak one, and Platt's smoothed targets keep it finite when training pairs are perfectly
separated. With rankings made for toxicity, responses scored below the crossover ``s = −a/b`` count
as toxic at the default threshold of 0.5.

The folder stays a plain Hugging Face model (``AutoModelForSequenceClassification`` loads it without
detoxrl); :data:`RM_FILE` is a small JSON file beside it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from detoxrl.errors import ModelError
from detoxrl.rewards.base import JudgeResult
from detoxrl.rewards.hf import HFClassifierJudge

RM_FILE = "detoxrl_rm.json"
"""What ``train-rm`` saves beside a reward model: normalisation and calibration (see the module doc)."""


def platt_fit(scores: Tensor, worse: Tensor, iters: int = 100) -> tuple[float, float]:
    """Fit ``P(worse | s) = σ(a + b·s)`` by Newton's method on Platt's smoothed targets.

    With ``N₊`` positives (``worse = 1``) and ``N₋`` negatives, the targets are ``t₊ = (N₊ + 1)/(N₊ + 2)``
    and ``t₋ = 1/(N₋ + 2)`` (Platt 1999), and ``(a, b)`` minimise the cross-entropy
    ``−Σ_i t_i log p_i + (1 − t_i) log(1 − p_i)``, ``p_i = σ(a + b·s_i)``. Each Newton step solves
    ``H Δ = g`` with ``g = Σ (p_i − t_i)(1, s_i)`` and ``H = Σ p_i(1 − p_i)(1, s_i)(1, s_i)ᵀ``.
    Example: one pair at ``s = −1`` (worse) and ``s = 1`` gives ``t = (2/3, 1/3)`` and exactly
    ``a = 0``, ``b = −ln 2``.
    """
    s = scores.double().flatten()
    y = worse.double().flatten()
    n_pos, n_neg = float(y.sum()), float((1 - y).sum())
    t = torch.where(y > 0.5, torch.tensor((n_pos + 1) / (n_pos + 2), dtype=torch.float64),
                    torch.tensor(1 / (n_neg + 2), dtype=torch.float64))
    x = torch.stack([torch.ones_like(s), s], 1)
    w = torch.zeros(2, dtype=torch.float64)
    for _ in range(iters):
        p = torch.sigmoid(x @ w)
        g = x.T @ (p - t)
        h = (x * (p * (1 - p)).unsqueeze(1)).T @ x + 1e-12 * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(h, g)
        w = w - step
        if float(step.abs().max()) < 1e-10:
            break
    return float(w[0]), float(w[1])


def rm_calibration(r_chosen: Tensor, r_rejected: Tensor) -> dict:
    """The contents of :data:`RM_FILE` from a reward model's outputs on its training pairs."""
    r = torch.cat([r_chosen.flatten(), r_rejected.flatten()]).double()
    mean = float(r.mean())
    std = float(r.std()) if len(r) > 1 else 0.0
    if not math.isfinite(std) or std < 1e-8:
        std = 1.0  # every output equal: keep the raw offset only
    z = (r - mean) / std
    a, b = platt_fit(z, torch.cat([torch.zeros(len(r_chosen)), torch.ones(len(r_rejected))]))
    return {"format": 1, "kind": "reward_model", "input": "(prompt, response)", "score_mean": mean,
            "score_std": std, "n_pairs": int(len(r_chosen)),
            "calibration": {"kind": "platt", "target": "P(worse)", "a": a, "b": b}}


def read_rm_info(folder: str | Path, where: str) -> dict:
    """:data:`RM_FILE` of ``folder``; :class:`ModelError` naming ``where`` if missing or malformed."""
    p = Path(folder) / RM_FILE
    if not p.is_file():
        raise ModelError(f"{where}: {folder} has no {RM_FILE}: it is not a reward model that train-rm trained on "
                         "rankings (retrain it, or use `type: hf` for a classifier)")
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
        cal = info["calibration"]
        info["score_mean"], info["score_std"] = float(info["score_mean"]), float(info["score_std"])
        cal["a"], cal["b"] = float(cal["a"]), float(cal["b"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{where}: {p} is not a valid reward-model file ({type(exc).__name__}: {exc})") from None
    if not info["score_std"] > 0:
        raise ModelError(f"{where}: {p}: score_std must be positive")
    return info


class RewardModelJudge(HFClassifierJudge):
    """A ``train-rm`` reward model: ``score = (r − μ)/σ``, ``toxicity = σ(a + b·score)`` (module doc).

    It reads (prompt, response) pairs, as it was trained; without prompts it reads ("", response).
    """

    def __init__(self, name: str, path: str, *, threshold: float = 0.5, max_length: int = 512,
                 batch_size: int = 64, device: str | torch.device = "cpu", model=None, tokenizer=None) -> None:
        where = f"judge {name}"
        self.info = read_rm_info(path, where)
        super().__init__(name, path, label=None, threshold=threshold, max_length=max_length,
                         batch_size=batch_size, device=device, model=model, tokenizer=tokenizer)
        if not self.single_output:
            raise ModelError(f"{where}: {path} has {len(self.labels)} outputs; a reward model has one")
        self.mean, self.std = self.info["score_mean"], self.info["score_std"]
        self.a, self.b = self.info["calibration"]["a"], self.info["calibration"]["b"]

    def _score_batch(self, texts: list[str], prompts: list[str] | None) -> JudgeResult:
        prompts = [""] * len(texts) if prompts is None else prompts
        r = self.logits(texts, prompts)[:, 0]
        score = (r - self.mean) / self.std
        toxicity = torch.sigmoid(self.a + self.b * score)
        return JudgeResult(self.name, score, toxicity, {}, toxicity, self.threshold)

    def __repr__(self) -> str:
        return (f"RewardModelJudge(name={self.name!r}, path={self.source!r}, mean={self.mean:.4g}, "
                f"std={self.std:.4g}, calibration=({self.a:.3g}, {self.b:.3g}))")
