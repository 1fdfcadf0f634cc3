"""The simulated labeller of the embedded default: it ranks a labelling batch the way a careful but
imperfect person would, from what the testbed knows about each candidate.

**The truth.** For a candidate ``y`` of a prompt whose gold summary is ``g`` (the testbed's clean
reference), :func:`quality` gives

- ``offensive``: the number of words of ``y`` in the testbed lexicon (the insults and expletives that
  hostile turns contain and parroted summaries repeat; the rude tier's mild words are not among them);
- ``faithfulness``: ROUGE-L F1 of ``y`` against ``g`` (the evaluation's ROUGE-L, Porter stemming).

The true order puts fewer offensive words first and, among candidates with as many, higher ROUGE-L
first: the config's criterion ("a toxic response is worse than a clumsy one; between two clean ones the
more accurate is better"). Walking down that order, a candidate is *tied in the truth* with the one
before it when both have as many offensive words and their ROUGE-L differ by at most
``faithfulness_margin`` (0: only equal ones), so the truth is a list of groups.

**The labeller's answer** for an item, drawn from a random generator seeded by ``(seed, item id)`` alone
(an item's answer does not depend on the rest of the batch), in this order:

1. *special label*: with probability ``special_rate`` the item gets a special label, uniform among
   ``specials``, and no ranks;
2. *noise*: with probability ``noise`` the labeller is careless on this item: it puts the true groups in a
   uniformly random order (``random.shuffle``) instead of the true one. Every pair of candidates from
   different true groups is then reversed with probability 1/2, so a share ``noise/2`` of all such pairs
   is reversed on average, whatever the number of candidates and the ties (5% at ``noise`` 0.1; step 3
   turns a few of them into ties);
3. *ties*: for each boundary between consecutive groups of that order, the two are merged (ranked equal)
   with probability ``tie_rate``;
4. the ranks are the standard competition ranks of the groups' positions (``1, 2, 2, 4``), the page's form.

With ``noise = tie_rate = special_rate = 0`` the answer is the true order. The rows are written by the
``labels`` stage exactly as the labelling page writes them (:func:`detoxrl.feedback.rankings.ranking_row`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from detoxrl.config import SimulatedLabellerSettings
from detoxrl.data.rankings import competition_ranks
from detoxrl.testbed.lexicon import find_words


@dataclass(frozen=True)
class Quality:
    """What the testbed knows about one candidate."""

    offensive: int
    faithfulness: float


@dataclass(frozen=True)
class Answer:
    """The labeller's answer for one item: ``ranks`` (one per candidate, 1 = best) or a ``special`` label."""

    ranks: list[int] | None = None
    special: str | None = None


class Scorer:
    """:func:`quality` for many candidates: the lexicon and one ROUGE-L scorer, made once."""

    def __init__(self, lexicon_words: Sequence[str]):
        from rouge_score import rouge_scorer  # lazy: it imports nltk

        self.words = frozenset(w.lower() for w in lexicon_words)
        self._rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def quality(self, candidate: str, gold: Sequence[str] | str) -> Quality:
        """Offensive words of ``candidate`` and its best ROUGE-L F1 over the gold summaries."""
        golds = [gold] if isinstance(gold, str) else list(gold)
        f = max((self._rouge.score(g, candidate)["rougeL"].fmeasure for g in golds), default=0.0)
        return Quality(len(find_words(candidate, self.words)), float(f))


def true_groups(qualities: Sequence[Quality], margin: float = 0.0) -> list[list[int]]:
    """The candidates' indices in the true order, grouped where the truth ties them (see the module doc);
    equal qualities keep their index order inside a group."""
    order = sorted(range(len(qualities)), key=lambda i: (qualities[i].offensive, -qualities[i].faithfulness, i))
    groups: list[list[int]] = []
    for i in order:
        if groups:
            prev = qualities[groups[-1][-1]]
            q = qualities[i]
            if q.offensive == prev.offensive and prev.faithfulness - q.faithfulness <= margin + 1e-12:
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def ranks_of(groups: Sequence[Sequence[int]], n: int) -> list[int]:
    """Competition ranks of ``n`` candidates from their groups, best group first."""
    position = [0] * n
    for k, group in enumerate(groups):
        for i in group:
            position[i] = k
    return competition_ranks(position)


def answer(qualities: Sequence[Quality], s: SimulatedLabellerSettings, rng: random.Random) -> Answer:
    """The labeller's answer for one item (module doc, steps 1–4), drawing from ``rng`` in that order."""
    if rng.random() < s.special_rate and s.specials:
        return Answer(special=s.specials[rng.randrange(len(s.specials))])
    groups = [list(g) for g in true_groups(qualities, s.faithfulness_margin)]
    if rng.random() < s.noise:
        rng.shuffle(groups)
    merged = [groups[0]]
    for g in groups[1:]:
        if rng.random() < s.tie_rate:
            merged[-1] = merged[-1] + g
        else:
            merged.append(g)
    return Answer(ranks=ranks_of(merged, len(qualities)))


def item_rng(seed: int, item_id: str) -> random.Random:
    """The generator of one item's answer: seeded by the run's labeller seed and the item's id only."""
    return random.Random(f"simulated-labeller:{seed}:{item_id}")
