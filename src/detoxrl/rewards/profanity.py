"""A judge over the offline ``alt-profanity-check`` model (a linear SVM on character n-grams).

``toxicity = dimensions["profanity"] = severity = predict_prob(text)``; ``score`` is the clean
probability ``1 − toxicity`` (or its log/logit with ε = 0.001). Texts are cut to ``max_length`` words.
"""

from __future__ import annotations

from typing import Literal

import torch

from detoxrl.errors import ConfigError
from detoxrl.rewards.base import Judge, JudgeResult, prob_score, truncate_words


class ProfanityCheckJudge(Judge):
    dimensions = ("profanity",)

    def __init__(self, name: str = "profanity-check", *, threshold: float = 0.5,
                 score: Literal["logit", "prob", "logprob"] = "prob", batch_size: int = 256,
                 max_length: int = 512) -> None:
        try:
            from profanity_check import predict_prob  # lazy: it loads scikit-learn (seconds)
        except ImportError:
            raise ConfigError(f"judge {name}: type 'profanity' needs the alt-profanity-check package "
                              "(pip install alt-profanity-check)") from None
        self._predict_prob = predict_prob
        self.name = name
        self.threshold = threshold
        self.score_kind = score
        self.batch_size = batch_size
        self.max_length = max_length

    def _score_batch(self, texts: list[str], prompts: list[str] | None) -> JudgeResult:
        texts = [truncate_words(t, self.max_length) for t in texts]
        p = torch.as_tensor(self._predict_prob(texts), dtype=torch.float32).reshape(-1)
        score = prob_score(1 - p, self.score_kind, eps=1e-3)
        return JudgeResult(self.name, score, p, {"profanity": p}, p.clone(), self.threshold)
