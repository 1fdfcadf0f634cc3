"""Evaluation metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from detoxrl.evaluation.metrics import (
    bootstrap_ci,
    distinct_n,
    expected_max_toxicity,
    mean_std,
    ngrams,
    paired_bootstrap,
    pct_improvement,
    rouge_scores,
    sequence_kl,
    sign_test,
    toxic_rate,
)

pytestmark = pytest.mark.cpus  # numeric: `make test-cpus` runs it on every CPU kernel set


# ------------------------------------------------------------------------------------------ bootstrap
def test_bootstrap_ci_contains_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.uniform(size=30), rng.uniform(size=3000)
    lo_s, hi_s = bootstrap_ci(small, seed=0)
    lo_l, hi_l = bootstrap_ci(large, seed=0)
    assert lo_s <= small.mean() <= hi_s
    assert lo_l <= large.mean() <= hi_l
    # the width shrinks like 1/sqrt(n): 100x the data, about a tenth of the width
    ratio = (hi_l - lo_l) / (hi_s - lo_s)
    assert 0.05 < ratio < 0.2


def test_bootstrap_ci_two_points_by_hand():
    # Resampling [0, 1] twice: the mean is 0 (p=1/4), 0.5 (1/2) or 1 (1/4); the std is 0 or 0.5.
    assert bootstrap_ci([0.0, 1.0], n_boot=4000, seed=3) == (0.0, 1.0)
    assert bootstrap_ci([0.0, 1.0], stat=np.std, n_boot=4000, seed=3) == (0.0, 0.5)
    # a non-vectorised statistic takes the slow path and gives the same interval
    assert bootstrap_ci([0.0, 1.0], stat=lambda a: float(np.mean(a)), n_boot=4000, seed=3) == (0.0, 1.0)


def test_bootstrap_ci_degenerate_inputs_and_determinism():
    assert bootstrap_ci([0.3] * 10) == pytest.approx((0.3, 0.3))
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    lo, hi = bootstrap_ci([])
    assert math.isnan(lo) and math.isnan(hi)
    x = np.linspace(0, 1, 50)
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)
    with pytest.raises(ValueError):
        bootstrap_ci(x, alpha=1.5)


def test_mean_std_and_toxic_rate():
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert toxic_rate([0.1, 0.5, 0.9], 0.5) == pytest.approx(2 / 3)  # >= threshold counts
    assert toxic_rate(torch.tensor([0.1, 0.2]), 0.5) == 0.0
    assert math.isnan(toxic_rate([], 0.5))


# ------------------------------------------------------------------------------------ improvement
def test_pct_improvement_sign_and_zero_guard():
    assert pct_improvement(0.2, 0.1) == pytest.approx(50.0)  # less toxic after: positive
    assert pct_improvement(0.1, 0.2) == pytest.approx(-100.0)  # more toxic after: negative
    assert pct_improvement(0.0, 0.0) == 0.0
    assert math.isnan(pct_improvement(0.0, 0.1))


# ----------------------------------------------------------------------------------- paired tests
def test_paired_exact_sign_flip_by_hand():
    # d = [1, 1, 1]: of the 8 sign vectors only (+,+,+) and (-,-,-) reach |mean| >= 1 -> p = 2/8.
    res = paired_bootstrap([0, 0, 0], [1, 1, 1])
    assert res["mean_diff"] == 1.0
    assert res["p_value"] == pytest.approx(0.25)
    assert res["ci95"] == [1.0, 1.0]
    # d = [1, 2, 3, 4]: again only the two constant sign vectors -> 2/16
    res = paired_bootstrap([0, 0, 0, 0], [1, 2, 3, 4])
    assert res["p_value"] == pytest.approx(0.125) and res["p_value_min"] == pytest.approx(0.125)
    # with more prompts than log2(n_boot) the resolution is 1 / (1 + n_boot)
    assert paired_bootstrap(np.zeros(30), np.ones(30), n_boot=99)["p_value_min"] == pytest.approx(0.01)
    # d = [1, -1]: mean 0, every sign vector is as extreme -> 1
    assert paired_bootstrap([0, 0], [1, -1])["p_value"] == pytest.approx(1.0)
    # nothing changed at all
    res = paired_bootstrap([0.2, 0.4], [0.2, 0.4])
    assert res["p_value"] == 1.0 and res["n_ties"] == 2


def test_paired_bootstrap_clear_shift_vs_no_shift():
    rng = np.random.default_rng(0)
    before = rng.uniform(0.2, 0.8, size=200)
    shifted = before - 0.1 + rng.normal(0, 0.05, size=200)
    res = paired_bootstrap(before, shifted, seed=0)
    assert res["mean_diff"] < 0
    assert res["ci95"][1] < 0  # the whole interval says "less toxic"
    assert res["p_value"] < 0.01 and res["sign_test_p"] < 0.01
    assert res["n_better"] > res["n_worse"]
    unchanged = before + rng.normal(0, 0.05, size=200)
    res0 = paired_bootstrap(before, unchanged, seed=0)
    assert res0["ci95"][0] < 0 < res0["ci95"][1]
    assert res0["p_value"] > 0.05


def test_paired_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in size"):
        paired_bootstrap([1, 2], [1])


def test_sign_test_by_hand():
    before = np.zeros(11)
    after = np.array([-1] * 8 + [1] * 2 + [0])  # 8 better, 2 worse, 1 tie
    res = sign_test(before, after)
    # 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 * 56 / 1024
    assert res["p_value"] == pytest.approx(112 / 1024)
    assert (res["n_better"], res["n_worse"], res["n_ties"]) == (8, 2, 1)
    assert sign_test([0, 0], [0, 0])["p_value"] == 1.0


# ---------------------------------------------------------------------------------- max toxicity
def test_expected_max_toxicity_by_hand():
    tox = [[0.1, 0.9], [0.5, 0.2]]  # [k=2 samples, N=2 prompts] -> maxima 0.5 and 0.9
    res = expected_max_toxicity(tox, n_boot=2000)
    assert res["value"] == pytest.approx(0.7)
    assert res["ci95"][0] == pytest.approx(0.5) and res["ci95"][1] == pytest.approx(0.9)
    assert expected_max_toxicity(torch.tensor([[0.1, 0.3]]))["value"] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        expected_max_toxicity(np.zeros((2, 2, 2)))


# ----------------------------------------------------------------------------------------- ROUGE
def test_rouge_takes_best_reference():
    preds = ["the cat sat"]
    only_bad = rouge_scores(preds, [["a dog ran"]])
    with_good = rouge_scores(preds, [["a dog ran", "the cat sat"]])
    assert only_bad["rouge1"] == 0.0
    assert with_good["rouge1"] == pytest.approx(1.0)
    assert with_good["rouge2"] == pytest.approx(1.0)
    assert with_good["rougeL"] == pytest.approx(1.0)


def test_rouge_by_hand_and_averaging():
    # "the cat sat on the mat" vs "the cat sat": P = 3/6, R = 3/3, F = 2PR/(P+R) = 2/3
    res = rouge_scores(["the cat sat on the mat", "cats"], ["the cat sat", ["cat"]])
    # the second pair matches through stemming (cats -> cat): F = 1; mean (2/3 + 1) / 2
    assert res["rouge1"] == pytest.approx((2 / 3 + 1) / 2)
    assert res["n"] == 2
    # rouge2 of the first pair: bigrams P = 2/5, R = 2/2 -> F = 4/7; the second has no bigram -> 0
    assert res["rouge2"] == pytest.approx((4 / 7) / 2)


def test_rouge_skips_predictions_without_references():
    res = rouge_scores(["a b", "c d"], [["a b"], ["", " "]])
    assert res["n"] == 1 and res["rouge1"] == pytest.approx(1.0)
    assert math.isnan(rouge_scores(["x"], [[]])["rouge1"])
    with pytest.raises(ValueError):
        rouge_scores(["x"], [])


# --------------------------------------------------------------------------------------- distinct
def test_distinct_n_hand_counts():
    texts = ["a b a b", "A b"]
    # unigrams: 6 in all, unique {a, b} -> 2/6; bigrams: ab, ba, ab + ab = 4, unique {ab, ba} -> 2/4
    assert distinct_n(texts, 1) == pytest.approx(1 / 3)
    assert distinct_n(texts, 2) == pytest.approx(0.5)
    assert distinct_n(["one", ""], 2) == 0.0
    assert ngrams("x y z", 2) == [("x", "y"), ("y", "z")]
    with pytest.raises(ValueError):
        distinct_n(texts, 0)


# --------------------------------------------------------------------------------------------- KL
def test_sequence_kl_by_hand():
    # policy (0.5, 0.5), reference (0.8, 0.2): KL = 0.5 ln(0.5/0.8) + 0.5 ln(0.5/0.2) = 0.5 ln 1.5625
    pol = torch.zeros(1, 2, 2)
    ref = torch.log(torch.tensor([0.8, 0.2])).expand(1, 2, 2)
    kl_tok = 0.5 * math.log(1.5625)
    assert sequence_kl(pol, ref, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(kl_tok, rel=1e-5)
    assert sequence_kl(pol, ref, torch.tensor([[1.0, 1.0]])).item() == pytest.approx(2 * kl_tok, rel=1e-5)
    assert sequence_kl(ref, ref, torch.ones(1, 2)).item() == pytest.approx(0.0, abs=1e-7)


def test_sequence_kl_matches_trainer_full_kl():
    from detoxrl.rl.core import full_kl_from_logits

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.float32)
    expected = (full_kl_from_logits(a, b) * mask).sum(1)
    assert torch.allclose(sequence_kl(a, b, mask), expected, atol=1e-5)
    assert (sequence_kl(a, b, mask) >= 0).all()
