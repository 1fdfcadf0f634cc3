"""The PPO algorithm as small pure functions on tensors.

Conventions
-----------
Every per-token tensor is ``[B, T]`` over *response* tokens. ``mask`` is 1.0 for real response tokens
(up to and including the EOS token) and 0.0 for padding after it; padding is on the right. Nothing here
knows about models, tokenizers or optimisers: the trainer loop calls these functions in order. The
masks come from :mod:`detoxrl.models.tokens`; the running score statistics live in :mod:`detoxrl.stats`.

References: Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"; Schulman et al.
2016 (GAE) and 2017 (PPO); Huang et al. 2023/2024, "The N Implementation Details of RLHF with PPO".
"""

from __future__ import annotations

from typing import Literal

import torch

# Re-exported: the trainer and older callers import the score statistics from here.
from detoxrl.stats import RunningMoments, normalize_scores  # noqa: F401

Penalty = Literal["kl", "abs", "mse", "full"]
PENALTIES: tuple[str, ...] = ("kl", "abs", "mse", "full")


# ------------------------------------------------------------------------------------ masked maths
def _as_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.to(dtype=like.dtype if like.is_floating_point() else torch.float32, device=like.device)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    r"""Mean of ``x`` over the entries where ``mask`` is 1.

    .. math:: \bar x = \frac{\sum_i m_i x_i}{\sum_i m_i}

    Entries under ``mask == 0`` are ignored even if they hold NaN or inf. With ``dim`` the mean is taken
    along that dimension; a slice with no unmasked entry gives 0.
    """
    m = _as_mask(mask, x)
    xm = torch.where(m > 0, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if dim is None:
        return (xm * m).sum() / m.sum().clamp_min(1e-8)
    return (xm * m).sum(dim) / m.sum(dim).clamp_min(1e-8)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    r"""Variance of ``x`` over the entries where ``mask`` is 1 (a scalar).

    .. math:: \sigma^2 = \frac{\sum_i m_i (x_i - \bar x)^2}{\sum_i m_i}
              \cdot \frac{n}{n-1}\ \text{(if unbiased)},\quad n = \sum_i m_i

    The Bessel factor ``n / (n - 1)`` is skipped when ``n < 2`` (the variance is then 0).
    """
    m = _as_mask(mask, x)
    mean = masked_mean(x, m)
    centered = torch.where(m > 0, x - mean, torch.zeros((), dtype=x.dtype, device=x.device))
    var = masked_mean(centered**2, m)
    if unbiased:
        n = m.sum()
        if float(n) >= 2:
            var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    r"""Standardise ``x`` with the mean and (unbiased) variance of its unmasked entries.

    .. math:: \hat x_i = \frac{x_i - \bar x}{\sqrt{\sigma^2 + 10^{-8}}}\ (+\ \bar x \text{ if not shift\_mean})

    Masked positions of the result are 0.
    """
    m = _as_mask(mask, x)
    mean = masked_mean(x, m)
    var = masked_var(x, m, unbiased=True)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return torch.where(m > 0, out, torch.zeros((), dtype=out.dtype, device=out.device))


# ------------------------------------------------------------------------------- logits → numbers
def _rowwise_fp32(fn, logits: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
    """Apply ``fn`` in float32; half-precision logits are upcast one row at a time to bound memory."""
    if logits.dtype in (torch.float32, torch.float64):
        return fn(logits, *extra)
    rows = [fn(logits[i].float(), *(e[i] for e in extra)) for i in range(logits.shape[0])]
    return torch.stack(rows)


class _TokenLogprobs(torch.autograd.Function):
    """``logits[..., y] - logsumexp(logits)`` in float32, one row of the batch at a time, with a fused backward.

    Autograd's version of the same expression (a gather minus a logsumexp of the float32 copy of each
    row of half-precision logits) builds, for every row it selects, a zero gradient of the whole
    ``[B, T, V]`` batch and a zero ``[T, V]`` one for the gather, then adds them all up. Here the backward
    writes each row's gradient once, with the same floating-point operations (``grad · exp(l - lse)``
    with the logsumexp's incoming ``-grad``, then ``+ grad`` at the label), so the gradient is
    bit-identical to autograd's, float32 and bfloat16 (``tests/test_perf_equivalence.py``).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        idx = labels.long().unsqueeze(-1)
        out = torch.empty(labels.shape, dtype=torch.float32, device=logits.device)
        lse = torch.empty(labels.shape, dtype=torch.float32, device=logits.device)
        for i in range(logits.shape[0]):
            lf = logits[i].float()
            lse[i] = torch.logsumexp(lf, dim=-1)
            out[i] = torch.gather(lf, -1, idx[i]).squeeze(-1) - lse[i]
        ctx.save_for_backward(logits, idx, lse)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, idx, lse = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)
        for i in range(logits.shape[0]):
            g = (-grad[i]).unsqueeze(-1) * (logits[i].float() - lse[i].unsqueeze(-1)).exp()
            g.scatter_add_(-1, idx[i], grad[i].unsqueeze(-1))
            grad_logits[i] = g
        return grad_logits, None


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Log-probability of each label token: ``[B, T, V]`` logits, ``[B, T]`` labels → ``[B, T]`` float32.

    .. math:: \log \pi(y_t) = l_{t, y_t} - \log \sum_v e^{l_{t,v}}

    Computed as a gather minus a logsumexp, so the full ``[B, T, V]`` log-softmax is never stored; the
    logits are taken to float32 one row at a time (:class:`_TokenLogprobs`). Float64 logits stay float64.
    """
    if logits.dtype == torch.float64:
        picked = torch.gather(logits, -1, labels.long().unsqueeze(-1)).squeeze(-1)
        return picked - torch.logsumexp(logits, dim=-1)
    return _TokenLogprobs.apply(logits, labels)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    r"""Entropy of the categorical distribution at each position: ``[B, T, V]`` → ``[B, T]``.

    .. math:: H = \log \sum_v e^{l_v} - \sum_v \operatorname{softmax}(l)_v\, l_v
    """

    def fn(lg: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(lg, dim=-1)
        return torch.logsumexp(lg, dim=-1) - (p * lg).sum(-1)

    return _rowwise_fp32(fn, logits)


def full_kl_from_logits(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    r"""Exact KL(π ‖ π_ref) over the whole vocabulary at each position: ``[B, T, V]`` ×2 → ``[B, T]``.

    .. math:: \mathrm{KL}_t = \sum_v \pi(v)\,\bigl(\log \pi(v) - \log \pi_{\text{ref}}(v)\bigr)
    """

    def fn(lg: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(lg, dim=-1)
        ref_logp = torch.log_softmax(ref.to(lg.dtype), dim=-1)
        return (logp.exp() * (logp - ref_logp)).sum(-1)

    return _rowwise_fp32(fn, logits, ref_logits)


# ---------------------------------------------------------------------------------------- rewards
def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, penalty: Penalty = "kl") -> torch.Tensor:
    r"""Per-token KL estimate ``k_t`` from the sampled token's log-probabilities.

    - ``kl``:  :math:`k_t = \log\pi(y_t) - \log\pi_{\text{ref}}(y_t)` (unbiased, can be negative)
    - ``abs``: :math:`k_t = |\log\pi(y_t) - \log\pi_{\text{ref}}(y_t)|`
    - ``mse``: :math:`k_t = \tfrac12(\log\pi(y_t) - \log\pi_{\text{ref}}(y_t))^2`

    ``full`` needs the whole distributions: use :func:`full_kl_from_logits`.
    """
    d = logprobs - ref_logprobs
    if penalty == "kl":
        return d
    if penalty == "abs":
        return d.abs()
    if penalty == "mse":
        return 0.5 * d**2
    if penalty == "full":
        raise ValueError("the 'full' KL penalty needs logits: pass kl=full_kl_from_logits(logits, ref_logits)")
    raise ValueError(f"unknown KL penalty {penalty!r}; known: {list(PENALTIES)}")


def last_token_indices(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last position with ``mask == 1`` in each row (``[B]``, long).

    Raises ``ValueError`` for a row with no real token (its score would have nowhere to go).
    """
    m = mask > 0
    if not bool(m.any(dim=1).all()):
        bad = (~m.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"response rows {bad} have no real token (all-zero mask)")
    t = mask.shape[1]
    return (t - 1) - m.flip(dims=[1]).long().argmax(dim=1)


def compute_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    penalty: Penalty = "kl",
    *,
    kl: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Per-token rewards: a KL penalty on every response token plus the judge score on the last one.

    .. math:: r_t = -\beta\, k_t + [t = t_{\text{last}}]\; s

    where :math:`k_t` is :func:`kl_penalty` of kind ``penalty`` (or the given ``kl`` tensor, e.g. from
    :func:`full_kl_from_logits`), :math:`\beta` = ``kl_coef``, :math:`s` the row's scalar score and
    :math:`t_{\text{last}}` its last real token (the EOS, or the last token of a response cut short).

    ``scores`` may also be ``[B, T]``, one score per token (:func:`spread_scores`), added where the mask is 1.

    Returns ``(rewards, kl, non_score_reward)``, each ``[B, T]`` and 0 on padding;
    ``non_score_reward = -β·k``.
    """
    if kl is None:
        kl = kl_penalty(logprobs, ref_logprobs, penalty)
    m = _as_mask(mask, logprobs)
    zero = torch.zeros((), dtype=kl.dtype, device=kl.device)
    kl = torch.where(m > 0, kl, zero)
    non_score = -float(kl_coef) * kl
    rewards = non_score.clone()
    if scores.dim() == 2:
        return rewards + torch.where(m > 0, scores.to(rewards.dtype), zero), kl, non_score
    last = last_token_indices(m)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype).reshape(-1)
    return rewards, kl, non_score


def spread_scores(scores: torch.Tensor, potentials: torch.Tensor, mask: torch.Tensor,
                  scale: float = 1.0) -> torch.Tensor:
    r"""Each row's score split over its tokens by how the judge's score moves along the response.

    ``potentials[b, t]`` is the raw score :math:`\phi_t` of row ``b``'s first ``t + 1`` tokens (NaN where
    not scored). For a row whose tokens before the last one, :math:`t < L`, are all scored:

    .. math::
        s_t = (\phi_t - \phi_{t-1}) / c \quad (t < L,\ \phi_{-1} = 0), \qquad
        s_L = s - \textstyle\sum_{t<L} s_t

    with :math:`c` = ``scale`` (the running standard deviation that normalised ``s``), so the row's
    tokens sum to its score ``scores[b]`` and the token at which the judge's verdict turns (an insult
    appears) carries that change. It is potential-based shaping (Ng, Harada and Russell, 1999) with
    γ = 1 and the prefix's score as the potential: a response's total reward is unchanged, and so is the
    best policy; what changes is which token the judge's verdict is credited to. A row with any NaN before
    its last token keeps its whole score on the last token. Returns ``[B, T]``, 0 on padding.
    """
    m = _as_mask(mask, potentials) > 0
    last = last_token_indices(m)
    b, t_len = m.shape
    pos = torch.arange(t_len, device=m.device).expand(b, t_len)
    before = pos < last[:, None]
    phi = potentials.to(torch.float64)
    dense = ~(torch.isnan(phi) & before).any(dim=1)
    phi = torch.where(before & dense[:, None], phi, torch.zeros((), dtype=phi.dtype, device=phi.device))
    prev = torch.cat([torch.zeros_like(phi[:, :1]), phi[:, :-1]], dim=1)
    inc = torch.where(before, (phi - prev) / float(scale), torch.zeros_like(phi))
    out = inc.clone()
    rows = torch.arange(b, device=m.device)
    out[rows, last] = scores.to(torch.float64).reshape(-1) - inc.sum(dim=1)
    return out.to(scores.dtype)


# ------------------------------------------------------------------------------------ advantages
@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalised advantage estimation over right-padded response tokens.

    .. math::
        \delta_t &= r_t + \gamma\, V_{t+1}\, m_{t+1} - V_t \\
        A_t &= \delta_t + \gamma\lambda\, m_{t+1} A_{t+1} \qquad (A_T = 0) \\
        R_t &= A_t + V_t

    The episode of each row ends at its last real token (bootstrap value 0), so rows of different
    lengths are handled. Returns ``(advantages, returns)``, both 0 at masked positions and detached.
    """
    m = _as_mask(mask, rewards)
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    r = torch.where(m > 0, rewards, zero)
    v = torch.where(m > 0, values.to(rewards.dtype), zero)
    b, t_len = r.shape
    adv = torch.zeros_like(r)
    last = torch.zeros(b, dtype=r.dtype, device=r.device)
    for t in reversed(range(t_len)):
        next_v = v[:, t + 1] if t + 1 < t_len else torch.zeros_like(last)
        delta = r[:, t] + gamma * next_v - v[:, t]
        last = (delta + gamma * lam * last) * m[:, t]
        adv[:, t] = last
    returns = (adv + v) * m
    return adv, returns


# ----------------------------------------------------------------------------------------- losses
def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""PPO's clipped surrogate, averaged over the unmasked tokens of the batch.

    .. math::
        \rho_t &= \exp(\log\pi(y_t) - \log\pi_{\text{old}}(y_t)) \\
        L &= \operatorname{mean}_t\ \max\bigl(-\rho_t A_t,\ -\operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon) A_t\bigr)

    (the max of negatives is :math:`-\min(\rho A, \operatorname{clip}(\rho) A)`).

    Stats (detached): ``clipfrac`` — share of tokens where the clipped term is the active one;
    ``approx_kl`` — the "k3" estimator :math:`\operatorname{mean}((\rho-1) - \log\rho)` of
    KL(π_old ‖ π), non-negative and unbiased; ``approx_kl_k2`` — :math:`\tfrac12\operatorname{mean}((\log\rho)^2)`;
    ``ratio_mean``; ``ratio_max``.
    """
    m = _as_mask(mask, logprobs)
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    log_ratio = torch.where(m > 0, logprobs - old_logprobs, zero)
    ratio = torch.exp(log_ratio)
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(pg1, pg2), m)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((pg2 > pg1).to(m.dtype), m),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, m),
            "approx_kl_k2": 0.5 * masked_mean(log_ratio**2, m),
            "ratio_mean": masked_mean(ratio, m),
            "ratio_max": torch.where(m > 0, ratio, zero).max(),
        }
    return loss, stats


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""Clipped value loss.

    .. math::
        V^{clip}_t &= V^{old}_t + \operatorname{clip}(V_t - V^{old}_t, -\epsilon_v, \epsilon_v) \\
        L_V &= \tfrac12 \operatorname{mean}_t \max\bigl((V_t - R_t)^2,\ (V^{clip}_t - R_t)^2\bigr)

    Stats (detached): ``vf_clipfrac`` — share of tokens where the clipped term is larger;
    ``value_mean``; ``value_error`` — mean squared error of the unclipped values.
    """
    m = _as_mask(mask, values)
    v_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    l1 = (values - returns) ** 2
    l2 = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(l1, l2), m)
    with torch.no_grad():
        stats = {
            "vf_clipfrac": masked_mean((l2 > l1).to(m.dtype), m),
            "value_mean": masked_mean(values, m),
            "value_error": masked_mean(l1, m),
        }
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""How much of the returns' variance the value function explains (1 is perfect, ≤ 0 is useless).

    .. math:: \mathrm{EV} = 1 - \frac{\operatorname{Var}(R - V)}{\operatorname{Var}(R)}

    over the unmasked tokens; NaN when the returns have no variance.
    """
    m = _as_mask(mask, returns)
    var_r = masked_var(returns, m, unbiased=False)
    var_err = masked_var(returns - values, m, unbiased=False)
    if float(var_r) == 0.0:
        return torch.tensor(float("nan"))
    return 1.0 - var_err / var_r


# ----------------------------------------------------------------------------------- score tools
def apply_missing_eos_penalty(scores: torch.Tensor, has_eos: torch.Tensor, penalty: float) -> torch.Tensor:
    r"""Subtract ``penalty`` from the score of every response that never produced EOS.

    .. math:: s' = s - p\,[\text{no EOS}]
    """
    missing = (~has_eos.bool()).to(device=scores.device, dtype=scores.dtype)
    return scores - penalty * missing


# ---------------------------------------------------------------------------------- control
def should_early_stop(approx_kl: float | torch.Tensor, target: float) -> bool:
    """True when the policy moved too far in this epoch: ``approx_kl > 1.5 × target``."""
    return float(approx_kl) > 1.5 * float(target)
