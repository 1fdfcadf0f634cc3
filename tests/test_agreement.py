"""Labeller agreement (detoxrl.data.agreement) against hand-computed and published values."""

from __future__ import annotations

import math

import pytest

from detoxrl.data.agreement import kendall_tau_b, krippendorff_alpha, rankings_agreement
from detoxrl.data.rankings import parse_rankings

T = "2026-03-01T12:00:00Z"


# --------------------------------------------------------------------------------- Kendall's τ-b
def test_kendall_tau_b_hand_computed():
    """x = (1, 2, 3), y = (1, 1, 3): pairs (1,2) tied in y, (1,3) and (2,3) concordant, so n_c = 2,
    n_d = 0, n_0 = 3, n_1 = 0, n_2 = 1 and τ_b = 2 / √(3 · 2) = 0.816497."""
    assert kendall_tau_b([1, 2, 3], [1, 1, 3]) == pytest.approx(2 / math.sqrt(6))
    assert kendall_tau_b([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # x = (1, 2, 3, 4), y = (2, 1, 4, 3): 4 concordant, 2 discordant, no ties → (4 − 2) / 6
    assert kendall_tau_b([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(1 / 3)
    # ties on both sides: x = (1, 1, 3, 4), y = (1, 2, 2, 4): n_c = 4, n_d = 0, n_1 = n_2 = 1 → 4 / 5
    assert kendall_tau_b([1, 1, 3, 4], [1, 2, 2, 4]) == pytest.approx(4 / 5)
    assert math.isnan(kendall_tau_b([1, 1], [1, 2]))  # one ranking ties everything: undefined


# --------------------------------------------------------------------------- Krippendorff's α
def test_krippendorff_alpha_ordinal_hand_computed():
    """Three units valued (1, 1), (2, 1), (3, 3) by two coders. Coincidences: o_11 = 2, o_12 = o_21 = 1,
    o_33 = 2, so n_1 = 3, n_2 = 1, n_3 = 2, n = 6. Ordinal δ²: δ²_12 = (3 + 1 − (3 + 1)/2)² = 4,
    δ²_13 = (6 − (3 + 2)/2)² = 12.25, δ²_23 = (1 + 2 − (1 + 2)/2)² = 2.25. Σ o δ² = 2 · 4 = 8 and
    Σ n_c n_k δ² = 2 (3·1·4 + 3·2·12.25 + 1·2·2.25) = 180, so α = 1 − 5 · 8 / 180 = 7/9."""
    assert krippendorff_alpha([[1, 1], [2, 1], [3, 3]], "ordinal") == pytest.approx(7 / 9)
    # nominal on the same data: Σ o δ² = 2, Σ n_c n_k δ² = 2 (3 + 6 + 2) = 22 → 1 − 5 · 2 / 22
    assert krippendorff_alpha([[1, 1], [2, 1], [3, 3]], "nominal") == pytest.approx(1 - 10 / 22)
    assert krippendorff_alpha([[1, 1], [2, 2], [3]], "ordinal") == 1.0  # the lone value is not pairable
    assert math.isnan(krippendorff_alpha([[1, 1], [1, 1]]))  # no variation: undefined
    assert math.isnan(krippendorff_alpha([[1], [2]]))


def test_krippendorff_alpha_textbook_example():
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the reliability data of 4
    observers × 12 units with missing values: α = 0.743 (nominal), 0.815 (ordinal), 0.849 (interval)."""
    n = None
    a = [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n]
    b = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3]
    c = [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n]
    d = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]
    units = [[v for v in unit if v is not None] for unit in zip(a, b, c, d)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)


# ---------------------------------------------------------------------------- on a rankings file
def test_rankings_agreement_per_item_and_overall():
    rows = [
        # item 1: ann (1, 2, 3) and bob (1, 1, 3) with the completions shown in another order
        {"prompt": "p", "completions": ["a", "b", "c"], "ranks": [1, 2, 3], "labeller": "ann", "time": T},
        {"prompt": "p", "completions": ["c", "b", "a"], "ranks": [3, 1, 1], "labeller": "bob", "time": T},
        {"prompt": "p", "completions": ["a", "b", "c"], "special": "skip", "labeller": "cat", "time": T},
        # item 2: one labeller only, and a row of the earlier format (no labeller): no agreement
        {"prompt": "q", "completions": ["x", "y"], "ranks": [1, 2], "labeller": "ann", "time": T},
        {"prompt": "q", "completions": ["x", "y"], "ranks": [2, 1]},
    ]
    out = rankings_agreement(parse_rankings(rows))
    assert out["items"] == 1
    assert out["kendall_tau_b"] == pytest.approx(2 / math.sqrt(6), abs=1e-4)
    # units a: (1, 1), b: (2, 1), c: (3, 3), as in the hand computation above
    assert out["krippendorff_alpha_ordinal"] == pytest.approx(7 / 9, abs=1e-4)
    assert out["per_item"] == [{"prompt": "p", "labellers": 2, "kendall_tau_b": round(2 / math.sqrt(6), 4)}]


def test_three_labellers_average_their_pairs_and_the_last_ranking_counts():
    def r(who, ranks):
        return {"prompt": "p", "completions": ["a", "b", "c"], "ranks": ranks, "labeller": who, "time": T}

    rows = [r("ann", [3, 2, 1]), r("ann", [1, 2, 3]), r("bob", [1, 2, 3]), r("cat", [3, 2, 1])]
    out = rankings_agreement(parse_rankings(rows))
    # pairs: ann–bob 1, ann–cat −1, bob–cat −1 → mean −1/3
    assert out["kendall_tau_b"] == pytest.approx(-1 / 3, abs=1e-4)
    assert out["per_item"][0]["labellers"] == 3
    assert rankings_agreement(parse_rankings(rows[:1]))["kendall_tau_b"] is None
