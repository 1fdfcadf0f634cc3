"""The testbed's simulated labeller (detoxrl.testbed.labeller) on hand-made candidates: the true order,
ties in the truth, noise 0 gives the true order, and the noise, tie and special-label rates measured over
many items with a fixed seed match their definitions."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from detoxrl.config import PAGE_SPECIAL_LABELS, SimulatedLabellerSettings
from detoxrl.data.rankings import SPECIAL_LABELS, check_ranks
from detoxrl.testbed.labeller import Quality, Scorer, answer, item_rng, ranks_of, true_groups

Q = Quality


def settings(**kw) -> SimulatedLabellerSettings:
    return SimulatedLabellerSettings(**{"noise": 0.0, "tie_rate": 0.0, "special_rate": 0.0, **kw})


def test_the_page_and_the_config_offer_the_same_special_labels():
    assert PAGE_SPECIAL_LABELS == tuple(SPECIAL_LABELS)
    with pytest.raises(ValueError, match="not special labels of the labelling page"):
        SimulatedLabellerSettings(specials=["skip", "boring"])


def test_true_order_offensive_words_first_then_rouge():
    qs = [Q(0, 0.5), Q(1, 0.9), Q(0, 0.8), Q(2, 0.1)]
    assert true_groups(qs) == [[2], [0], [1], [3]]
    assert ranks_of(true_groups(qs), 4) == [2, 3, 1, 4]


def test_truth_ties_equal_qualities_and_those_within_the_margin():
    assert ranks_of(true_groups([Q(0, 0.5), Q(0, 0.5), Q(1, 0.5)]), 3) == [1, 1, 3]
    # within 0.1 of the next better one: 0.8 → 0.75 tie; 0.5 is 0.25 below, its own group
    qs = [Q(0, 0.5), Q(0, 0.8), Q(0, 0.75)]
    assert ranks_of(true_groups(qs, margin=0.1), 3) == [3, 1, 1]
    # a chain: each within 0.1 of the one before it
    assert ranks_of(true_groups([Q(0, 0.8), Q(0, 0.72), Q(0, 0.64)], margin=0.1), 3) == [1, 1, 1]
    # the margin never ties across offensive counts
    assert ranks_of(true_groups([Q(0, 0.5), Q(1, 0.5)], margin=0.5), 2) == [1, 2]


def test_noise_zero_gives_the_true_order():
    rng = random.Random(0)
    for _ in range(200):
        qs = [Q(rng.randrange(3), rng.random()) for _ in range(rng.randrange(2, 6))]
        got = answer(qs, settings(), rng)
        assert got.special is None and got.ranks == ranks_of(true_groups(qs), len(qs))


def test_noise_one_shuffles_the_true_groups_and_tie_rate_one_ties_all():
    qs = [Q(0, 0.9), Q(0, 0.9), Q(1, 0.5), Q(2, 0.5)]  # true groups [0, 1], [2], [3]
    seen = {tuple(answer(qs, settings(noise=1.0), random.Random(k)).ranks) for k in range(200)}
    # the tied pair stays tied; the three groups take all 3! orders
    assert seen == {(1, 1, 3, 4), (1, 1, 4, 3), (2, 2, 1, 4), (3, 3, 1, 2), (2, 2, 4, 1), (3, 3, 2, 1)}
    assert answer(qs, settings(tie_rate=1.0), random.Random(0)).ranks == [1, 1, 1, 1]


def test_scorer_counts_lexicon_words_and_rouge_l():
    scorer = Scorer(["zorp", "blarg"])
    assert scorer.quality("Ann books a table for two.", "Ann books a table for two.") == Q(0, 1.0)
    q = scorer.quality("Ann books a zorp table, ZORP blarg.", ["Nothing alike here.", "Ann books a table."])
    assert q.offensive == 3 and 0.5 < q.faithfulness < 1.0


def test_an_items_answer_depends_on_the_seed_and_its_id_only():
    qs = [Q(0, 0.1 * k) for k in range(4)]
    s = settings(noise=0.5, tie_rate=0.3, special_rate=0.2)
    a = [answer(qs, s, item_rng(7, f"item{k}")) for k in range(50)]
    b = [answer(qs, s, item_rng(7, f"item{k}")) for k in reversed(range(50))][::-1]
    assert a == b and a != [answer(qs, s, item_rng(8, f"item{k}")) for k in range(50)]


def _many(s: SimulatedLabellerSettings, n_items: int = 4000, n: int = 4):
    qs = [Q(0, 0.9 - 0.2 * k) for k in range(n)]  # distinct: the true order is 0, 1, 2, 3
    return [answer(qs, s, item_rng(0, str(k))) for k in range(n_items)]


def test_special_labels_at_their_rate_uniform_among_the_labels():
    got = _many(settings(special_rate=0.1))
    specials = [a.special for a in got if a.special]
    assert abs(len(specials) / len(got) - 0.1) < 0.015
    for label in SPECIAL_LABELS:
        assert abs(specials.count(label) / len(specials) - 1 / 3) < 0.06
    assert all(a.ranks is None for a in got if a.special)


def test_ties_at_their_rate_among_adjacent_places():
    got = _many(settings(tie_rate=0.2))
    places = [sorted(a.ranks) for a in got]
    tied = sum(x == y for p in places for x, y in zip(p, p[1:]))
    assert abs(tied / (3 * len(got)) - 0.2) < 0.015
    for a in got:
        assert check_ranks(a.ranks, 4, "row") == tuple(a.ranks)  # the page's competition form


def test_noise_reverses_half_of_the_pairs_of_the_shuffled_items():
    # 4 distinct candidates; a share 0.2 of the items shuffled: 0.2/2 = 10% of the pairs reversed, and an
    # item keeps the true order unless shuffled (or shuffled into it: 1/24 of the shuffled ones)
    got = _many(settings(noise=0.2))
    reversed_ = sum(a.ranks[i] > a.ranks[j] for a in got for i, j in itertools.combinations(range(4), 2))
    assert abs(reversed_ / (6 * len(got)) - 0.1) < 0.01
    assert sum(a.ranks == [1, 2, 3, 4] for a in got) / len(got) == pytest.approx(0.8 + 0.2 / 24, abs=0.02)


def test_rows_are_the_pages_rows(tmp_path):
    """What the labels stage writes for an answer is built by the page's own row writer."""
    from detoxrl.data.rankings import read_rankings
    from detoxrl.feedback.batch import BatchItem
    from detoxrl.feedback.rankings import Submission, ranking_row

    item = BatchItem("abc", "Summarize: x", ["a", "b", "c"])
    rows = [ranking_row(Submission("simulated", item, ranks=answer([Q(1, 0.2), Q(0, 0.1), Q(0, 0.3)],
                                                                   settings(), random.Random(0)).ranks)),
            ranking_row(Submission("simulated", item, special="skip"))]
    path = tmp_path / "rankings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = read_rankings(path)
    assert got[0].ranks == (3, 2, 1) and got[1].special == "skip"
    assert list(rows[0]) == ["prompt", "completions", "ranks", "labeller", "time", "id"]
