"""How much labellers agree: Kendall's τ-b per item and Krippendorff's α over a whole rankings file.

Pure functions on plain numbers (no numpy needed), each with its formula, and
:func:`rankings_agreement`, which applies them to the rankings several labellers gave the same item
(the same prompt and completions, in any order).

- :func:`kendall_tau_b` — Kendall (1945): for two rankings ``x, y`` of ``n`` things, with ``n_c``
  concordant and ``n_d`` discordant pairs, ``n_0 = n(n−1)/2`` and ``n_1 = Σ_i t_i(t_i−1)/2`` over the
  groups of ``t_i`` ties in ``x`` (``n_2`` the same in ``y``)::

      τ_b = (n_c − n_d) / √((n_0 − n_1)(n_0 − n_2))

  1: the same order, −1: reversed, 0: unrelated. Undefined (NaN) when either ranking ties everything.
- :func:`krippendorff_alpha` — Krippendorff (2004, 2011): the disagreement observed within units
  against the disagreement expected by chance, ``α = 1 − D_o / D_e``, over every pairable value (a unit
  with one value is dropped). With ``o_ck`` the coincidence matrix (``Σ_u`` number of ``c``–``k`` pairs of
  values in unit ``u`` ``/ (m_u − 1)``), ``n_c = Σ_k o_ck``, ``n = Σ_c n_c``::

      α = 1 − (n − 1) · Σ_ck o_ck δ²_ck / Σ_ck n_c n_k δ²_ck

  with ``δ²_ck`` = ``[c ≠ k]`` (nominal), ``(c − k)²`` (interval), or, ordinal, for values ``c ≤ k`` in
  order, ``(Σ_{g=c..k} n_g − (n_c + n_k)/2)²``. 1: perfect agreement, 0: chance, below 0: systematic
  disagreement. Undefined (NaN) with fewer than two pairable values or no variation at all.

For a rankings file, the units of α are the (item, completion) pairs, the coders the labellers and the
values the ranks (ordinal). A labeller who ranked an item twice counts with their last ranking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

from detoxrl.data.rankings import Ranking


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of two equally long rankings (see the module docstring); NaN when undefined."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau_b: {len(x)} and {len(y)} values")
    nc = nd = tie_x = tie_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 or dy == 0:
            tie_x += dx == 0
            tie_y += dy == 0
        elif (dx > 0) == (dy > 0):
            nc += 1
        else:
            nd += 1
    n0 = len(x) * (len(x) - 1) // 2
    denom = math.sqrt((n0 - tie_x) * (n0 - tie_y))
    return (nc - nd) / denom if denom > 0 else float("nan")


def _delta2(values: list[float], counts: dict[float, float], metric: str) -> dict[tuple[float, float], float]:
    """``δ²_ck`` for every ordered pair of the distinct values (ascending)."""
    out = {}
    for a, c in enumerate(values):
        for k in values[a:]:
            if metric == "nominal":
                d = 0.0 if c == k else 1.0
            elif metric == "interval":
                d = (c - k) ** 2
            else:
                between = sum(counts[g] for g in values if c <= g <= k)
                d = (between - (counts[c] + counts[k]) / 2) ** 2
            out[c, k] = out[k, c] = d
    return out


def krippendorff_alpha(units: Sequence[Sequence[float]], metric: str = "ordinal") -> float:
    """Krippendorff's α of ``units`` (each the values the coders gave it; missing ones left out).

    ``metric``: ``nominal``, ``ordinal`` or ``interval`` (formula in the module docstring).
    """
    if metric not in ("nominal", "ordinal", "interval"):
        raise ValueError(f"krippendorff_alpha: unknown metric {metric!r}")
    coincidence: dict[tuple[float, float], float] = {}
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        for i, j in combinations(range(m), 2):
            for c, k in ((unit[i], unit[j]), (unit[j], unit[i])):
                coincidence[c, k] = coincidence.get((c, k), 0.0) + 1.0 / (m - 1)
    counts: dict[float, float] = {}
    for (c, _), o in coincidence.items():
        counts[c] = counts.get(c, 0.0) + o
    n = sum(counts.values())
    if n < 2:
        return float("nan")
    values = sorted(counts)
    delta2 = _delta2(values, counts, metric)
    observed = sum(o * delta2[c, k] for (c, k), o in coincidence.items())
    expected = sum(counts[c] * counts[k] * delta2[c, k] for c in values for k in values)
    if expected == 0:
        return float("nan")
    return 1.0 - (n - 1) * observed / expected


def _last_by_labeller(rankings: Sequence[Ranking]) -> dict[tuple, dict[str, dict[str, float]]]:
    """``{item: {labeller: {completion: rank}}}`` over the named labellers' rankings (the last one counts)."""
    out: dict[tuple, dict[str, dict[str, float]]] = {}
    for r in rankings:
        if r.ranks is None or r.labeller is None:
            continue
        out.setdefault(r.item, {})[r.labeller] = dict(zip(r.completions, r.ranks))
    return out


def _finite_or_none(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def rankings_agreement(rankings: Sequence[Ranking], prompt_chars: int = 80) -> dict:
    """Agreement between the labellers who ranked the same items.

    Returns ``items`` (items ranked by two or more labellers), ``kendall_tau_b`` (the mean over those
    items of the mean τ-b over their pairs of labellers; pairs where τ-b is undefined are left out),
    ``krippendorff_alpha_ordinal`` (over every such item's completions) and ``per_item`` (prompt,
    labellers, τ-b). Undefined figures are ``None``.
    """
    per_item, taus, units = [], [], []
    for (prompt, comps), by in _last_by_labeller(rankings).items():
        if len(by) < 2:
            continue
        names = sorted(by)
        pair_taus = [kendall_tau_b([by[a][c] for c in comps], [by[b][c] for c in comps])
                     for a, b in combinations(names, 2)]
        defined = [t for t in pair_taus if not math.isnan(t)]
        tau = sum(defined) / len(defined) if defined else float("nan")
        if defined:
            taus.append(tau)
        units += [[by[name][c] for name in names] for c in comps]
        per_item.append({"prompt": prompt[:prompt_chars], "labellers": len(names), "kendall_tau_b": _finite_or_none(tau)})
    mean_tau = sum(taus) / len(taus) if taus else float("nan")
    return {"items": len(per_item), "kendall_tau_b": _finite_or_none(mean_tau),
            "krippendorff_alpha_ordinal": _finite_or_none(krippendorff_alpha(units, "ordinal")),
            "per_item": per_item}
