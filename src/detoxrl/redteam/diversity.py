r"""How varied the successful prompts are: distinct-n (from :mod:`detoxrl.evaluation.metrics`) and
self-BLEU (Zhu et al., 2018, "Texygen").

Self-BLEU is the mean over the texts of each text's BLEU-4 with all the *other* texts as references:
1 when every text repeats the others, near 0 when they share no 4-gram. BLEU (Papineni et al., 2002) of a
hypothesis :math:`h` against references :math:`R`, on lower-cased white-space words:

.. math::
    p_n = \frac{\sum_{g \in G_n(h)} \min\bigl(c_h(g), \max_{r \in R} c_r(g)\bigr)}{\sum_{g \in G_n(h)} c_h(g)},
    \qquad
    \mathrm{BLEU} = \mathrm{BP} \cdot \exp\Bigl(\tfrac14 \sum_{n=1}^{4} \log p_n\Bigr),
    \qquad
    \mathrm{BP} = \min\bigl(1, e^{1 - \rho / |h|}\bigr)

with :math:`\rho` the reference length closest to :math:`|h|` (the shorter on a tie). A zero clipped count
is replaced by :math:`\epsilon = 0.1` (smoothing "method 1" of Chen & Cherry, 2014); a hypothesis with
no ``n``-gram of some order scores 0.

The maximum over the other texts is found without comparing pairs: for every ``n``-gram the two largest
counts over all texts are kept, and a text's own count is left out by taking the second when it holds the
first, so the whole is linear in the number of ``n``-grams.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence

from detoxrl.evaluation.metrics import distinct_n, ngrams

__all__ = ["bleu", "distinct_n", "self_bleu"]

EPSILON = 0.1


def _top_two(counts: list[Counter]) -> dict[tuple, tuple[int, int, int]]:
    """Per n-gram: (largest count, the text holding it, second-largest count)."""
    top: dict[tuple, tuple[int, int, int]] = {}
    for i, c in enumerate(counts):
        for g, k in c.items():
            first, who, second = top.get(g, (0, -1, 0))
            if k > first:
                top[g] = (k, i, first)
            elif k > second:
                top[g] = (first, who, k)
    return top


def _bleu_from(hyp_counts: list[Counter], ref_max, hyp_len: int, ref_len: int, max_n: int) -> float:
    logs = 0.0
    for n in range(1, max_n + 1):
        c = hyp_counts[n - 1]
        total = sum(c.values())
        if total == 0:
            return 0.0
        clipped = sum(min(k, ref_max(n, g)) for g, k in c.items())
        logs += math.log(clipped / total if clipped else EPSILON / total)
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * math.exp(logs / max_n)


def _closest(sorted_lengths: list[int], n: int) -> int:
    i = bisect.bisect_left(sorted_lengths, n)
    near = [sorted_lengths[j] for j in (i - 1, i) if 0 <= j < len(sorted_lengths)]
    return min(near, key=lambda r: (abs(r - n), r))


def bleu(hypothesis: str, references: Sequence[str], max_n: int = 4) -> float:
    """Sentence BLEU-``max_n`` of one hypothesis against references (smoothed as the module says)."""
    hyp = [Counter(ngrams(hypothesis, n)) for n in range(1, max_n + 1)]
    refs = [[Counter(ngrams(r, n)) for n in range(1, max_n + 1)] for r in references]
    hyp_len = len(ngrams(hypothesis, 1))
    if not refs or hyp_len == 0:
        return 0.0
    ref_len = _closest(sorted(len(ngrams(r, 1)) for r in references), hyp_len)
    return _bleu_from(hyp, lambda n, g: max(r[n - 1].get(g, 0) for r in refs), hyp_len, ref_len, max_n)


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float:
    """Mean BLEU-``max_n`` of each text against all the others; nan for fewer than two texts."""
    if len(texts) < 2:
        return float("nan")
    counts = [[Counter(ngrams(t, n)) for t in texts] for n in range(1, max_n + 1)]
    tops = [_top_two(c) for c in counts]
    lengths = [sum(c.values()) for c in counts[0]]
    scores = []
    for i in range(len(texts)):
        if lengths[i] == 0:
            scores.append(0.0)
            continue
        others = sorted(lengths[:i] + lengths[i + 1:])

        def ref_max(n: int, g: tuple, i: int = i) -> int:
            first, who, second = tops[n - 1][g]
            return second if who == i else first

        hyp = [counts[n][i] for n in range(max_n)]
        scores.append(_bleu_from(hyp, ref_max, lengths[i], _closest(others, lengths[i]), max_n))
    return sum(scores) / len(scores)
