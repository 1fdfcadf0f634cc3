"""PPO maths against hand-computed numbers (worked out in the comments)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from detoxrl.config import KLSettings
from detoxrl.models.tokens import (
    first_true_indices,
    response_mask_from_eos,
    truncate_after_eos,
)
from detoxrl.rl.core import (
    apply_missing_eos_penalty,
    compute_rewards,
    entropy_from_logits,
    explained_variance,
    full_kl_from_logits,
    gae,
    kl_penalty,
    last_token_indices,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    should_early_stop,
    spread_scores,
)
from detoxrl.rl.kl import AdaptiveKLController, FixedKLController, make_kl_controller
from detoxrl.stats import RunningMoments, normalize_scores

pytestmark = pytest.mark.cpus  # numeric: `make test-cpus` runs it on every CPU kernel set


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def close(a: torch.Tensor, b, tol: float = 1e-9) -> None:
    torch.testing.assert_close(a.double(), t(b), atol=tol, rtol=0)


# ------------------------------------------------------------------------------------- masked maths
def test_masked_mean_and_var_ignore_padding_even_nan():
    x = t([[1.0, 2.0, float("nan")], [3.0, 4.0, 5.0]])
    m = t([[1, 1, 0], [1, 0, 0]])
    # entries 1, 2, 3 → mean 2, population var 2/3, unbiased var 1
    close(masked_mean(x, m), 2.0)
    close(masked_mean(x, m, dim=1), [1.5, 3.0])
    close(masked_var(x, m, unbiased=False), 2 / 3)
    close(masked_var(x, m), 1.0)


def test_masked_var_single_entry_is_zero():
    close(masked_var(t([[7.0, 1.0]]), t([[1, 0]])), 0.0)


def test_whiten_uses_masked_entries_only():
    x = t([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 0.0, -50.0]])
    m = t([[1, 1, 1, 0], [1, 1, 0, 0]])
    # real entries 1..5: mean 3, unbiased var (4+1+0+1+4)/4 = 2.5, so (x-3)/sqrt(2.5)
    w = masked_whiten(x, m)
    close(w, [[-1.2649110615375296, -0.6324555307687648, 0.0, 0.0],
              [0.6324555307687648, 1.2649110615375296, 0.0, 0.0]], tol=1e-7)
    close(masked_mean(w, m), 0.0, tol=1e-12)
    close(masked_var(w, m), 1.0, tol=1e-7)
    # without shifting the mean back out, the mean stays 3
    w2 = masked_whiten(x, m, shift_mean=False)
    close(masked_mean(w2, m), 3.0, tol=1e-9)


# --------------------------------------------------------------------------------- logits → numbers
def test_logprobs_from_logits_equals_log_softmax_gather():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g)
    labels = torch.randint(0, 11, (3, 5), generator=g)
    expected = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logprobs_from_logits(logits, labels), expected)
    # half precision goes through float32 row by row
    got = logprobs_from_logits(logits.bfloat16(), labels)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=0.05, rtol=0)


def test_logprobs_hand_case():
    # logits [0, ln 3] → probabilities [1/4, 3/4]
    logits = t([[[0.0, math.log(3.0)]]])
    close(logprobs_from_logits(logits, torch.tensor([[1]])), [[math.log(0.75)]])
    close(logprobs_from_logits(logits, torch.tensor([[0]])), [[math.log(0.25)]])


def test_entropy_uniform_is_log_v_and_hand_case():
    close(entropy_from_logits(torch.zeros(2, 3, 7, dtype=torch.float64)), [[math.log(7)] * 3] * 2)
    # p = [1/4, 3/4]: H = -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.5623351446188083
    close(entropy_from_logits(t([[[0.0, math.log(3.0)]]])), [[0.5623351446188083]])


def test_full_kl_hand_case_and_zero_for_equal():
    # π = [1/2, 1/2], π_ref = [3/4, 1/4]:
    # KL = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25) = 0.5 ln(4/3) = 0.14384103622589042
    logits = t([[[0.0, 0.0]]])
    ref = t([[[math.log(3.0), 0.0]]])
    close(full_kl_from_logits(logits, ref), [[0.14384103622589042]])
    x = torch.randn(2, 4, 9)
    torch.testing.assert_close(full_kl_from_logits(x, x), torch.zeros(2, 4), atol=1e-6, rtol=0)


# -------------------------------------------------------------------------------------- rewards
LOGP = t([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
REF = t([[-1.5, -1.0, -1.0], [-2.0, -1.0, 0.0]])
MASK = t([[1, 1, 0], [1, 1, 1]])
# d = logp - ref = [[0.5, -1.0, (pad)], [1.0, 0.0, -1.0]]


@pytest.mark.parametrize("kind, expected", [
    ("kl", [[0.5, -1.0, 0.0], [1.0, 0.0, -1.0]]),
    ("abs", [[0.5, 1.0, 0.0], [1.0, 0.0, 1.0]]),
    ("mse", [[0.125, 0.5, 0.0], [0.5, 0.0, 0.5]]),
])
def test_kl_penalty_kinds(kind, expected):
    _, kl, _ = compute_rewards(t([0.0, 0.0]), LOGP, REF, MASK, 0.1, kind)
    close(kl, expected)
    # the bare penalty does not know the mask
    assert float(kl_penalty(LOGP, REF, kind)[0, 2]) != 0.0


def test_full_penalty_needs_logits():
    with pytest.raises(ValueError, match="logits"):
        compute_rewards(t([0.0, 0.0]), LOGP, REF, MASK, 0.1, "full")
    with pytest.raises(ValueError, match="unknown"):
        kl_penalty(LOGP, REF, "nope")  # type: ignore[arg-type]


def test_rewards_place_score_on_last_real_token():
    scores = t([2.0, -1.0])
    rewards, kl, non_score = compute_rewards(scores, LOGP, REF, MASK, 0.1, "kl")
    # non-score = -0.1·k = [[-0.05, 0.1, 0], [-0.1, 0, 0.1]]
    close(non_score, [[-0.05, 0.1, 0.0], [-0.1, 0.0, 0.1]])
    # + score on the last real token: row 0 → t=1, row 1 → t=2
    close(rewards, [[-0.05, 2.1, 0.0], [-0.1, 0.0, -0.9]])


def test_rewards_accept_precomputed_full_kl():
    kl_full = t([[0.3, 0.2, 9.0], [0.0, 0.1, 0.4]])
    rewards, kl, _ = compute_rewards(t([1.0, 0.0]), LOGP, REF, MASK, 0.5, "full", kl=kl_full)
    close(kl, [[0.3, 0.2, 0.0], [0.0, 0.1, 0.4]])
    close(rewards, [[-0.15, 0.9, 0.0], [0.0, -0.05, -0.2]])


def test_rewards_take_per_token_scores():
    # MASK = [[1, 1, 0], [1, 1, 1]]; per-token scores land where the mask is 1 (the 9 on padding does not)
    rewards, _, _ = compute_rewards(t([[0.5, 1.5, 9.0], [1.0, 0.0, -2.0]]), LOGP, REF, MASK, 0.1, "kl")
    close(rewards, [[-0.05 + 0.5, 0.1 + 1.5, 0.0], [-0.1 + 1.0, 0.0, 0.1 - 2.0]])


def test_spread_scores_by_hand():
    nan = float("nan")
    mask = t([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    # row 0: prefixes of 1, 2 and 3 tokens score 0, -0.1 and -5 (the insult is token 2); its 4th token is
    # the last, so its own potential is never read. Row 1 was not scored; row 2 lacks token 1's prefix.
    potentials = t([[0.0, -0.1, -5.0, 7.0, nan], [nan] * 5, [0.0, nan, nan, nan, nan]])
    out = spread_scores(t([1.0, 2.0, 3.0]), potentials, mask, scale=2.0)
    # row 0: increments / 2 = 0, -0.05, -2.45; the last token gets 1 - (0 - 0.05 - 2.45) = 3.5
    close(out, [[0.0, -0.05, -2.45, 3.5, 0.0], [0.0, 2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0, 0.0]])
    close(out.sum(1), [1.0, 2.0, 3.0])


def test_last_token_indices_and_empty_row():
    close(last_token_indices(t([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])).double(), [1, 3, 0])
    with pytest.raises(ValueError, match="no real token"):
        last_token_indices(t([[1, 0], [0, 0]]))


# ------------------------------------------------------------------------------------------- GAE
RAG_R = t([[0.1, -0.2, 1.0], [0.3, 2.0, 9.0]])
RAG_V = t([[0.5, 0.4, 0.3], [1.0, 0.6, 7.0]])
RAG_M = t([[1, 1, 1], [1, 1, 0]])


def test_gae_ragged_gamma1_lam095():
    # row 0: δ2 = 1.0 - 0.3 = 0.7                 A2 = 0.7
    #        δ1 = -0.2 + 0.3 - 0.4 = -0.3         A1 = -0.3 + 0.95·0.7 = 0.365
    #        δ0 = 0.1 + 0.4 - 0.5 = 0.0           A0 = 0.95·0.365 = 0.34675
    # row 1 (ends at t=1): δ1 = 2.0 - 0.6 = 1.4   A1 = 1.4
    #        δ0 = 0.3 + 0.6 - 1.0 = -0.1          A0 = -0.1 + 0.95·1.4 = 1.23
    adv, ret = gae(RAG_R, RAG_V, RAG_M, gamma=1.0, lam=0.95)
    close(adv, [[0.34675, 0.365, 0.7], [1.23, 1.4, 0.0]])
    close(ret, [[0.84675, 0.765, 1.0], [2.23, 2.0, 0.0]])


def test_gae_ragged_gamma09_lam05():
    # γλ = 0.45
    # row 0: δ2 = 0.7                              A2 = 0.7
    #        δ1 = -0.2 + 0.9·0.3 - 0.4 = -0.33     A1 = -0.33 + 0.45·0.7 = -0.015
    #        δ0 = 0.1 + 0.9·0.4 - 0.5 = -0.04      A0 = -0.04 + 0.45·(-0.015) = -0.04675
    # row 1: δ1 = 1.4                              A1 = 1.4
    #        δ0 = 0.3 + 0.9·0.6 - 1.0 = -0.16      A0 = -0.16 + 0.45·1.4 = 0.47
    adv, ret = gae(RAG_R, RAG_V, RAG_M, gamma=0.9, lam=0.5)
    close(adv, [[-0.04675, -0.015, 0.7], [0.47, 1.4, 0.0]])
    close(ret, [[0.45325, 0.385, 1.0], [1.47, 2.0, 0.0]])


def test_gae_lambda1_returns_are_reward_to_go():
    # γ = λ = 1: returns = Σ future rewards, whatever the values
    _, ret = gae(RAG_R, RAG_V, RAG_M, gamma=1.0, lam=1.0)
    close(ret, [[0.9, 0.8, 1.0], [2.3, 2.0, 0.0]])


def test_gae_matches_plain_python_loop_on_random_ragged_batch():
    g = torch.Generator().manual_seed(1)
    r, v = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    lengths = [6, 1, 3, 5]
    m = t([[1.0 if j < n else 0.0 for j in range(6)] for n in lengths])
    gamma, lam = 0.97, 0.9
    expected = []
    for i, n in enumerate(lengths):
        row, a = [0.0] * 6, 0.0
        for j in reversed(range(n)):
            nv = float(v[i, j + 1]) if j + 1 < n else 0.0
            a = float(r[i, j]) + gamma * nv - float(v[i, j]) + gamma * lam * a
            row[j] = a
        expected.append(row)
    adv, _ = gae(r, v, m, gamma, lam)
    close(adv, expected, tol=1e-12)


# ---------------------------------------------------------------------------------------- losses
EPS = 0.2


@pytest.mark.parametrize("ratio, adv, loss, clipped", [
    (1.1, 2.0, -2.2, 0.0),   # inside the trust region: -ρA = -2.2
    (1.5, 1.0, -1.2, 1.0),   # above 1+ε with A > 0: -min(1.5, 1.2) = -1.2, clipped
    (0.5, -1.0, 0.8, 1.0),   # below 1-ε with A < 0: -min(-0.5, -0.8) = 0.8, clipped
    (1.5, -1.0, 1.5, 0.0),   # above 1+ε with A < 0: -min(-1.5, -1.2) = 1.5, not clipped
    (0.5, 1.0, -0.5, 0.0),   # below 1-ε with A > 0: -min(0.5, 0.8) = -0.5, not clipped
])
def test_policy_loss_regions(ratio, adv, loss, clipped):
    old = t([[-1.0]])
    new = old + math.log(ratio)
    got, stats = ppo_policy_loss(new, old, t([[adv]]), t([[1.0]]), EPS)
    close(got, loss, tol=1e-12)
    close(stats["clipfrac"], clipped)


def test_policy_loss_batch_with_padding_and_stats():
    old = t([[-1.0, -2.0], [-0.5, -3.0]])
    ratios = [[1.1, 1.5], [0.5, 123.0]]  # the last token is padding
    new = old + torch.log(t(ratios))
    adv = t([[2.0, 1.0], [-1.0, 50.0]])
    mask = t([[1, 1], [1, 0]])
    loss, stats = ppo_policy_loss(new, old, adv, mask, EPS)
    # (-2.2 - 1.2 + 0.8) / 3
    close(loss, -2.6 / 3, tol=1e-12)
    close(stats["clipfrac"], 2 / 3)
    # k3 = mean((ρ-1) - ln ρ) over ρ ∈ {1.1, 1.5, 0.5}; k2 = ½ mean((ln ρ)^2)
    close(stats["approx_kl"], 0.09745729754915201, tol=1e-12)
    close(stats["approx_kl_k2"], 0.10898983303094993, tol=1e-12)
    close(stats["ratio_mean"], 1.0333333333333334, tol=1e-12)


def test_policy_loss_gradient_zero_when_clipped():
    old = t([[-1.0]])
    new = (old + math.log(1.5)).requires_grad_(True)
    loss, _ = ppo_policy_loss(new, old, t([[1.0]]), t([[1.0]]), EPS)
    loss.backward()
    assert float(new.grad) == 0.0


def test_value_loss_clipping():
    values, old, returns = t([[1.0, 0.6, 0.0]]), t([[0.5, 0.5, 0.5]]), t([[1.2, 0.0, 1.0]])
    # token 0: V_clip = 0.5 + 0.2 = 0.7; (1.0-1.2)^2 = 0.04 < (0.7-1.2)^2 = 0.25 → 0.25, clipped
    # token 1: inside the range: V_clip = V = 0.6 → 0.36, not clipped
    # token 2: V_clip = 0.3; (0-1)^2 = 1.0 > (0.3-1)^2 = 0.49 → 1.0, not clipped
    # loss = ½ (0.25 + 0.36 + 1.0) / 3
    loss, stats = ppo_value_loss(values, old, returns, t([[1, 1, 1]]), EPS)
    close(loss, 0.5 * 1.61 / 3, tol=1e-12)
    close(stats["vf_clipfrac"], 1 / 3)
    # padding does not count
    loss2, _ = ppo_value_loss(t([[1.0, 0.6, 0.0, 5.0]]), t([[0.5, 0.5, 0.5, 0.0]]), t([[1.2, 0.0, 1.0, -5.0]]),
                              t([[1, 1, 1, 0]]), EPS)
    close(loss2, 0.5 * 1.61 / 3, tol=1e-12)


def test_explained_variance():
    r = t([[1.0, 2.0, 3.0, 50.0]])
    m = t([[1, 1, 1, 0]])
    close(explained_variance(r, r, m), 1.0)
    # R - V = [0, 0, 1]: var = 2/9; var R = 2/3 → EV = 1 - 1/3
    close(explained_variance(t([[1.0, 2.0, 2.0, 0.0]]), r, m), 2 / 3, tol=1e-12)
    assert math.isnan(float(explained_variance(t([[0.0, 1.0]]), t([[1.0, 1.0]]), t([[1, 1]]))))


# ---------------------------------------------------------------------------------- score tools
def test_running_moments_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=n) for n in (5, 1, 17, 8, 2)]
    rm = RunningMoments()
    seen: list[float] = []
    for b in batches:
        b_mean, b_std = rm.update(torch.tensor(b))
        seen.extend(b.tolist())
        assert b_mean == pytest.approx(float(np.mean(b)))
        assert b_std == pytest.approx(float(np.std(b, ddof=1)) if len(b) > 1 else 0.0)
        assert rm.mean == pytest.approx(float(np.mean(seen)), abs=1e-12)
        if len(seen) > 1:
            assert rm.std == pytest.approx(float(np.std(seen, ddof=1)), abs=1e-12)
        assert rm.count == len(seen)
    rm2 = RunningMoments()
    rm2.load_state_dict(json.loads(json.dumps(rm.state_dict())))
    assert (rm2.mean, rm2.std, rm2.count) == (rm.mean, rm.std, rm.count)


def test_normalize_scores():
    rm = RunningMoments()
    rm.update([1.0, 2.0, 3.0])  # mean 2, unbiased std 1
    close(normalize_scores(t([4.0, 0.0]), rm), [2.0, -2.0])
    close(normalize_scores(t([4.0, 0.0]), rm, clip=1.5), [1.5, -1.5])
    one = RunningMoments()
    one.update([5.0])  # no spread yet: only the mean is removed
    close(normalize_scores(t([6.0]), one), [1.0])


def test_missing_eos_penalty():
    got = apply_missing_eos_penalty(t([1.0, 1.0, -2.0]), torch.tensor([True, False, False]), 0.5)
    close(got, [1.0, 0.5, -2.5])


def test_response_mask_from_eos_keeps_the_eos():
    eos = 1
    ids = torch.tensor([[5, 6, 1, 7, 1], [5, 1, 1, 1, 1], [5, 6, 7, 8, 9], [1, 4, 4, 4, 4]])
    close(first_true_indices(ids == eos).double(), [2, 1, 5, 0])
    close(response_mask_from_eos(ids, eos), [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    out, mask, has_eos = truncate_after_eos(ids, eos, pad_token_id=0)
    assert out.tolist() == [[5, 6, 1, 0, 0], [5, 1, 0, 0, 0], [5, 6, 7, 8, 9], [1, 0, 0, 0, 0]]
    assert has_eos.tolist() == [True, True, False, True]


def test_should_early_stop():
    assert should_early_stop(0.31, 0.2)
    assert not should_early_stop(0.29, 0.2)
    assert not should_early_stop(torch.tensor(0.25), 0.2)
    assert should_early_stop(torch.tensor(0.35), 0.2)


# ------------------------------------------------------------------------------------ controllers
def test_adaptive_kl_controller_one_update_by_hand():
    c = AdaptiveKLController(0.2, target=6.0, horizon=10_000)
    # KL 9 → e = clip(9/6 - 1 = 0.5) = 0.2 → β = 0.2·(1 + 0.2·32/10000) = 0.200128
    c.update(9.0, 32)
    assert c.value == pytest.approx(0.200128, abs=1e-15)
    c2 = AdaptiveKLController(0.2, target=6.0, horizon=10_000)
    # KL 5.4 → e = -0.1 → β = 0.2·(1 - 0.1·32/10000) = 0.199936
    c2.update(torch.tensor(5.4, dtype=torch.float64), 32)
    assert c2.value == pytest.approx(0.199936, abs=1e-15)
    c3 = AdaptiveKLController(1.0, target=1.0, horizon=10)
    c3.update(0.0, 10)  # e = clip(-1) = -0.2 → β = 1·(1 - 0.2) = 0.8
    assert c3.value == pytest.approx(0.8)


def test_controllers_state_and_factory():
    c = make_kl_controller(KLSettings(init_coef=0.3, adaptive=True, target=2.0, horizon=100))
    assert isinstance(c, AdaptiveKLController) and c.value == 0.3
    c.update(4.0, 10)  # e = 0.2 → 0.3·1.02
    fresh = make_kl_controller(KLSettings(init_coef=0.3, adaptive=True, target=2.0, horizon=100))
    fresh.load_state_dict(json.loads(json.dumps(c.state_dict())))
    assert fresh.value == pytest.approx(0.306)
    f = make_kl_controller(KLSettings(init_coef=0.05, adaptive=False))
    assert isinstance(f, FixedKLController)
    f.update(100.0, 64)
    assert f.value == 0.05
    g = FixedKLController(0.0)
    g.load_state_dict(f.state_dict())
    assert g.value == 0.05
