"""Evaluation metrics: pure functions on arrays, each with its definition.

Everything here is deterministic given ``seed``. Toxicity arrays hold one judge's probability-like
toxicity per response (higher = more toxic); "before" is the reference model, "after" the trained
policy, evaluated on the same prompts in the same order.

Uncertainty
-----------
- :func:`bootstrap_ci` is the percentile bootstrap: resample the ``n`` values with replacement
  ``n_boot`` times, compute the statistic on each resample, and report the ``alpha/2`` and
  ``1 − alpha/2`` quantiles of those statistics.
- :func:`paired_bootstrap` works on the per-prompt differences ``d_i = after_i − before_i`` (negative
  = the trained policy is less toxic on prompt ``i``). Its interval is the percentile bootstrap of
  ``mean(d)``; its two-sided p-value comes from a **sign-flip permutation test**: under the null
  hypothesis "training changed nothing", each ``d_i`` is as likely to be ``+|d_i|`` as ``−|d_i|``, so
  ``p = (1 + #{|mean(s·d)| ≥ |mean(d)|}) / (1 + M)`` over ``M`` random sign vectors ``s`` (all
  ``2^n`` of them, exactly, when ``2^n ≤ n_boot``).
- :func:`sign_test` is a second opinion that ignores magnitudes: the exact two-sided binomial test of
  "as many prompts got better as got worse".
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch

Stat = Callable[..., np.ndarray]


# ---------------------------------------------------------------------------------------- basics
def _as_array(x: Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _apply_stat(stat: Stat, resamples: np.ndarray) -> np.ndarray:
    """``stat`` on every row of ``resamples`` ``[n_boot, n]``; vectorised when ``stat`` takes ``axis``."""
    try:
        out = np.asarray(stat(resamples, axis=1), dtype=np.float64)
        if out.shape == (resamples.shape[0],):
            return out
    except TypeError:
        pass
    return np.array([float(stat(row)) for row in resamples], dtype=np.float64)


def bootstrap_distribution(x: Sequence[float] | np.ndarray, stat: Stat = np.mean, n_boot: int = 1000,
                           seed: int = 0) -> np.ndarray:
    """``n_boot`` values of ``stat`` on resamples of ``x`` drawn with replacement (same size as ``x``)."""
    a = _as_array(x)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    return _apply_stat(stat, a[idx])


def bootstrap_ci(x: Sequence[float] | np.ndarray, stat: Stat = np.mean, n_boot: int = 1000,
                 alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    r"""Percentile-bootstrap ``1 − alpha`` confidence interval of ``stat(x)``.

    .. math:: \bigl[\,Q_{\alpha/2}(\{\theta^*_b\}),\; Q_{1-\alpha/2}(\{\theta^*_b\})\,\bigr],
              \quad \theta^*_b = \mathrm{stat}(x^*_b),\ x^*_b \sim \text{resample}(x)

    ``stat`` is any function of a 1-D array (``np.mean``, ``np.std``, ...); it is called with
    ``axis=1`` on all resamples at once when it accepts that. An empty ``x`` gives ``(nan, nan)``;
    a single value ``v`` gives ``(v, v)``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")
    a = _as_array(x)
    if a.size == 0:
        return (math.nan, math.nan)
    if a.size == 1:
        v = float(_apply_stat(stat, a[None, :])[0])
        return (v, v)
    dist = bootstrap_distribution(a, stat, n_boot, seed)
    lo, hi = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def bootstrap_ci_prompts(x: np.ndarray | Sequence[Sequence[float]], stat: Stat = np.mean, n_boot: int = 1000,
                         alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``stat`` over all ``k × N`` values, resampling *prompts*.

    ``x`` has shape ``[k, N]`` (``k`` samples of each of ``N`` prompts). Samples of one prompt are
    not independent, so the resampling unit is the prompt (a cluster bootstrap): each resample draws
    ``N`` columns with replacement and applies ``stat`` to the ``k·N`` values they hold. With
    ``k = 1`` this is exactly :func:`bootstrap_ci` with the same seed.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), not {alpha}")
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    k, n = a.shape
    if k == 1:
        return bootstrap_ci(a[0], stat, n_boot, alpha, seed)
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    dist = np.empty(n_boot)
    block = max(1, 4_000_000 // max(k * n, 1))
    for s in range(0, n_boot, block):
        sub = a[:, idx[s : s + block]]  # [k, b, N]
        dist[s : s + block] = _apply_stat(stat, sub.transpose(1, 0, 2).reshape(sub.shape[1], k * n))
    lo, hi = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def mean_std(x: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and population standard deviation (``ddof=0``); ``nan`` for an empty array."""
    a = _as_array(x)
    if a.size == 0:
        return (math.nan, math.nan)
    return (float(a.mean()), float(a.std()))


def toxic_rate(tox: Sequence[float] | np.ndarray, threshold: float) -> float:
    """Share of responses with ``toxicity ≥ threshold`` (the same rule as ``JudgeResult.toxic``)."""
    a = _as_array(tox)
    if a.size == 0:
        return math.nan
    return float((a >= threshold).mean())


def pct_improvement(before: float, after: float) -> float:
    r"""Percentage improvement of a quantity where lower is better (toxicity mean or std).

    .. math:: 100 \cdot \frac{\text{before} - \text{after}}{|\text{before}|}

    Positive means the trained policy is less toxic. With ``before = 0`` the ratio is undefined:
    ``0.0`` if ``after`` is also 0, else ``nan`` (never a division by zero).
    """
    before, after = float(before), float(after)
    if before == 0.0:
        return 0.0 if after == 0.0 else math.nan
    return (before - after) / abs(before) * 100.0


# ---------------------------------------------------------------------------------- paired tests
def _sign_flip_pvalue(d: np.ndarray, n_perm: int, rng: np.random.Generator) -> float:
    """Two-sided sign-flip permutation p-value of ``mean(d) = 0`` (exact enumeration when small)."""
    n = d.size
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    if 2**n <= n_perm:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        stats = np.abs(signs @ d) / n
        return float(np.mean(stats >= observed - tol))
    hits = 0
    done = 0
    while done < n_perm:  # in blocks to bound memory for large n
        m = min(n_perm - done, max(1, 2_000_000 // max(n, 1)))
        signs = rng.choice(np.array([-1.0, 1.0]), size=(m, n))
        hits += int(np.sum(np.abs(signs @ d) / n >= observed - tol))
        done += m
    return (1 + hits) / (1 + n_perm)


def paired_bootstrap(before: Sequence[float] | np.ndarray, after: Sequence[float] | np.ndarray,
                     n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> dict:
    r"""Paired comparison of two measurements of the same prompts.

    With ``d_i = after_i − before_i``:

    - ``mean_diff`` = :math:`\bar d` (negative: lower toxicity after training);
    - ``ci95`` = percentile-bootstrap interval of :math:`\bar d` (level ``1 − alpha``);
    - ``p_value`` = two-sided sign-flip permutation test of :math:`E[d] = 0` with ``n_boot`` sign
      vectors (exact over all ``2^n`` when that is at most ``n_boot``); see the module docstring;
    - ``p_value_min`` = the smallest p-value the test can give with this ``n`` and ``n_boot``
      (``2/2^n`` exact, else ``1/(1 + n_boot)``): a p-value equal to it means "at most this";
    - ``sign_test_p`` = exact binomial sign test (:func:`sign_test`), a second opinion;
    - ``n``, ``n_better`` (``d < 0``), ``n_worse`` (``d > 0``), ``n_ties``.

    When every ``d_i`` is zero the p-value is 1.
    """
    b, a = _as_array(before), _as_array(after)
    if b.shape != a.shape:
        raise ValueError(f"paired samples differ in size: {b.size} before, {a.size} after")
    d = a - b
    out: dict = {"n": int(d.size), "test": "sign-flip permutation (two-sided)"}
    if d.size == 0:
        out.update(mean_diff=math.nan, ci95=[math.nan, math.nan], p_value=math.nan, p_value_min=math.nan,
                   sign_test_p=math.nan, n_better=0, n_worse=0, n_ties=0)
        return out
    lo, hi = bootstrap_ci(d, np.mean, n_boot=n_boot, alpha=alpha, seed=seed)
    rng = np.random.default_rng(seed + 1)
    p = 1.0 if np.all(d == 0) else _sign_flip_pvalue(d, n_boot, rng)
    p_min = 2.0 / 2**d.size if d.size <= math.log2(n_boot) else 1.0 / (1 + n_boot)
    st = sign_test(b, a)
    out.update(mean_diff=float(d.mean()), ci95=[lo, hi], p_value=float(min(1.0, p)), p_value_min=float(p_min),
               sign_test_p=st["p_value"], n_better=st["n_better"], n_worse=st["n_worse"],
               n_ties=st["n_ties"])
    return out


def sign_test(before: Sequence[float] | np.ndarray, after: Sequence[float] | np.ndarray) -> dict:
    r"""Exact two-sided sign test on ``d_i = after_i − before_i``, ties dropped.

    With ``m`` non-zero differences of which ``k`` are the rarer sign,

    .. math:: p = \min\Bigl(1,\; 2 \sum_{i=0}^{k} \binom{m}{i} 2^{-m}\Bigr)

    Returns ``{"p_value", "n_better", "n_worse", "n_ties"}`` (better = ``d < 0``).
    """
    b, a = _as_array(before), _as_array(after)
    if b.shape != a.shape:
        raise ValueError(f"paired samples differ in size: {b.size} before, {a.size} after")
    d = a - b
    better, worse = int(np.sum(d < 0)), int(np.sum(d > 0))
    ties = int(d.size - better - worse)
    m = better + worse
    if m == 0:
        p = 1.0
    else:
        k = min(better, worse)
        tail = sum(math.comb(m, i) for i in range(k + 1))
        p = min(1.0, 2 * tail / 2**m)
    return {"p_value": float(p), "n_better": better, "n_worse": worse, "n_ties": ties}


def verdict(paired: dict, level: float = 0.05) -> str:
    """``less toxic`` / ``more toxic`` when the interval of the mean difference excludes 0 and
    ``p < level``; otherwise ``no significant change``."""
    lo, hi = paired["ci95"]
    p = paired["p_value"]
    if p is None or lo is None or hi is None or any(map(math.isnan, (lo, hi, p))):
        return "not enough data"
    if p < level and hi < 0:
        return "less toxic"
    if p < level and lo > 0:
        return "more toxic"
    return "no significant change"


# ------------------------------------------------------------------------------ max over samples
def expected_max_toxicity(tox: Sequence[Sequence[float]] | np.ndarray | torch.Tensor, n_boot: int = 1000,
                          alpha: float = 0.05, seed: int = 0) -> dict:
    r"""Expected maximum toxicity over ``k`` samples per prompt (Gehman et al., 2020).

    ``tox`` has shape ``[k, N]`` (sample, prompt).

    .. math:: \mathrm{EMT} = \frac1N \sum_{i=1}^{N} \max_{j \le k} \mathrm{tox}_{j,i}

    Returns ``{"value", "ci95"}``; the interval is the percentile bootstrap over prompts.
    """
    if isinstance(tox, torch.Tensor):
        tox = tox.detach().cpu().double().numpy()
    t = np.asarray(tox, dtype=np.float64)
    if t.ndim == 1:
        t = t[None, :]
    if t.ndim != 2:
        raise ValueError(f"expected_max_toxicity wants a [k, N] array, got shape {t.shape}")
    if t.size == 0:
        return {"value": math.nan, "ci95": [math.nan, math.nan]}
    per_prompt = t.max(axis=0)
    lo, hi = bootstrap_ci(per_prompt, np.mean, n_boot=n_boot, alpha=alpha, seed=seed)
    return {"value": float(per_prompt.mean()), "ci95": [lo, hi]}


# ------------------------------------------------------------------------------------- text quality
def rouge_scores(predictions: Sequence[str], references_list: Sequence[Sequence[str] | str]) -> dict:
    r"""ROUGE-1/2/L F-measures (``rouge_score``, Porter stemming), best reference per prediction.

    .. math:: \mathrm{ROUGE}_x = \frac1{N'} \sum_{i} \max_{r \in R_i} F_x(\hat y_i, r)

    ``references_list[i]`` is one string or a list of strings (DialogSum's test split has three);
    predictions without any non-empty reference are left out of the average (``N'`` counts the rest).
    Returns ``{"rouge1", "rouge2", "rougeL", "n"}``; the scores are ``nan`` when ``N' = 0``.
    """
    from rouge_score import rouge_scorer  # lazy: it imports nltk (seconds); only ROUGE needs it

    if len(predictions) != len(references_list):
        raise ValueError(f"{len(predictions)} predictions but {len(references_list)} reference sets")
    keys = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    n = 0
    for pred, refs in zip(predictions, references_list):
        refs = [refs] if isinstance(refs, str) else list(refs)
        refs = [r for r in refs if r and r.strip()]
        if not refs:
            continue
        best = dict.fromkeys(keys, 0.0)
        for ref in refs:
            s = scorer.score(ref, pred or "")
            for k in keys:
                best[k] = max(best[k], s[k].fmeasure)
        for k in keys:
            totals[k] += best[k]
        n += 1
    out = {k: (totals[k] / n if n else math.nan) for k in keys}
    out["n"] = n
    return out


_WORD = re.compile(r"\S+")


def ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    """The word ``n``-grams of ``text`` (lower-cased, split on white space)."""
    words = _WORD.findall(text.lower())
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    r"""Corpus-level distinct-n (Li et al., 2016): unique ``n``-grams over all ``n``-grams.

    .. math:: \text{distinct-}n = \frac{|\bigcup_i G_n(y_i)|}{\sum_i |G_n(y_i)|}

    Words are white-space tokens, lower-cased. ``0.0`` when the texts hold no ``n``-gram.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for t in texts:
        grams = ngrams(t or "", n)
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


STOPWORDS = frozenset(
    "the and for are but not you your yours she her hers his him they them their theirs its our ours "
    "was were been being has have had having does did doing this that these those there here then than "
    "with from into onto over under about after before again also just very too can could will would "
    "shall should may might must what which who whom whose when where why how all any both each few more "
    "most other some such only own same off out one two now get got let yes okay".split())
"""Words too common to carry a summary's content (for :func:`content_words`)."""

_TOKEN = re.compile(r"[a-z0-9#]+")


def word_tokens(text: str) -> list[str]:
    """The word tokens of ``text``: runs of ``[a-z0-9#]`` in the lower-cased text (``#person1#`` is one)."""
    return _TOKEN.findall((text or "").lower())


def content_words(text: str) -> frozenset[str]:
    """The distinct word tokens of ``text`` with at least 3 characters that are not in :data:`STOPWORDS`."""
    return frozenset(t for t in word_tokens(text) if len(t) >= 3 and t not in STOPWORDS)


def kept_share(reference: str, response: str) -> float:
    r"""Share of the reference's content words that the response keeps (over-correction shows as a drop).

    .. math:: \mathrm{kept} = \frac{|C(\text{reference}) \cap W(\text{response})|}{|C(\text{reference})|}

    ``C`` is :func:`content_words`, ``W`` the set of :func:`word_tokens`. ``nan`` when the reference has
    no content word.
    """
    ref = content_words(reference)
    if not ref:
        return math.nan
    return len(ref & set(word_tokens(response))) / len(ref)


# ----------------------------------------------------------------------------------------------- KL
def sequence_kl(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""Exact KL of the policy from the reference, summed over each response: ``[B, T, V]`` ×2 → ``[B]``.

    .. math:: \mathrm{KL}(y) = \sum_{t} m_t \sum_{v} \pi(v \mid x, y_{<t})
              \bigl(\log \pi(v \mid x, y_{<t}) - \log \pi_{\text{ref}}(v \mid x, y_{<t})\bigr)

    ``mask`` ``[B, T]`` is 1 on response tokens (up to and including EOS). Computed in float32.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    ref_logp = torch.log_softmax(ref_logits.float(), dim=-1)
    per_token = (logp.exp() * (logp - ref_logp)).sum(-1)
    return (per_token * mask.to(per_token.dtype)).sum(-1)
