"""The report's figures: PNG images drawn with matplotlib's Agg renderer (no display needed).

Each ``plot_*`` function returns the PNG bytes, or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np


def series(rows: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``key`` over the rows that have a finite number for it."""
    xs, ys = [], []
    for i, r in enumerate(rows):
        v = r.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        step = r.get("step", i)
        xs.append(float(step) if isinstance(step, (int, float)) else float(i))
        ys.append(float(v))
    return np.asarray(xs), np.asarray(ys)


def _figure(width: float = 5.6, height: float = 3.2):
    from matplotlib.figure import Figure  # lazy: matplotlib takes about a second to import; only the report draws

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter at the start)."""
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def _plot_lines(ax, rows: Sequence[dict], keys: Sequence[str], *, start: int = 0) -> int:
    """Draw each key as a line (raw and smoothed when long) in colours ``C{start}``, ``C{start+1}``, …"""
    drawn = 0
    for key in keys:
        x, y = series(rows, key)
        if not len(x):
            continue
        color = f"C{(start + drawn) % 10}"
        if len(y) > 20:
            ax.plot(x, y, alpha=0.3, linewidth=0.8, color=color)
            ax.plot(x, _smooth(y, max(3, len(y) // 20)), color=color, linewidth=1.6, label=key)
        else:
            ax.plot(x, y, marker="o", markersize=3, linewidth=1.4, label=key, color=color)
        drawn += 1
    return drawn


def plot_panel(rows: Sequence[dict], title: str, keys: Sequence[str], *, ylabel: str = "",
               twin: Sequence[str] = (), band: tuple[str, str] | None = None, step_keys: Sequence[str] = (),
               twin_label: str = "") -> bytes | None:
    """One training-curve panel: ``keys`` on the left axis, ``twin`` on a right axis (labelled ``twin_label``,
    default the keys); ``None`` if empty.

    ``band = (mean_key, std_key)`` shades mean ± std. ``step_keys`` are drawn as steps (stages).
    """
    present = [k for k in (*keys, *twin, *step_keys) if len(series(rows, k)[0])]
    if not present:
        return None
    fig = _figure()
    ax = fig.subplots()
    if band is not None:
        x, m = series(rows, band[0])
        xs, s = series(rows, band[1])
        if len(x) and len(x) == len(xs):
            ax.fill_between(x, m - s, m + s, alpha=0.15, color="C0", label=f"{band[0]} ± std")
    drawn = _plot_lines(ax, rows, keys)
    for key in step_keys:
        x, y = series(rows, key)
        if len(x):
            ax.step(x, y, where="post", linewidth=1.6, label=key, color=f"C{drawn % 10}")
            drawn += 1
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("PPO step")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if twin:
        ax2 = ax.twinx()
        _plot_lines(ax2, rows, twin, start=drawn)
        ax2.set_ylabel(twin_label or ", ".join(twin), fontsize=8)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="best")
    return figure_png(fig)


def plot_histograms(before: dict[str, np.ndarray], after: dict[str, np.ndarray], judges: Sequence[str],
                    thresholds: dict[str, float]) -> bytes | None:
    """Toxicity histograms before/after, one small panel per judge."""
    judges = [j for j in judges if len(before.get(j, [])) or len(after.get(j, []))]
    if not judges:
        return None
    cols = min(3, len(judges))
    rows = math.ceil(len(judges) / cols)
    fig = _figure(4.0 * cols, 2.9 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    bins = np.linspace(0, 1, 21)
    for ax, j in zip(axes, judges):
        b = np.clip(before.get(j, np.zeros(0)), 0, 1)
        a = np.clip(after.get(j, np.zeros(0)), 0, 1)
        ax.hist(b, bins=bins, alpha=0.55, log=True,
                label=f"before (mean {np.nanmean(b):.3f})" if len(b) else "before")
        ax.hist(a, bins=bins, alpha=0.55, log=True,
                label=f"after (mean {np.nanmean(a):.3f})" if len(a) else "after")
        if j in thresholds:
            ax.axvline(thresholds[j], color="black", linestyle="--", linewidth=0.8, label="threshold")
        ax.set_title(f"toxicity by {j}", fontsize=10)
        ax.set_xlabel("toxicity")
        ax.set_ylabel("responses (log scale)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(judges):]:
        ax.set_visible(False)
    return figure_png(fig)


def plot_constitution_bars(rows: Sequence[dict], keys: Sequence[str]) -> bytes | None:
    """Per principle: mean violation rate over the first and the last fifth of training."""
    if not keys or not rows:
        return None
    first, last = [], []
    for k in keys:
        _, y = series(rows, k)
        if not len(y):
            first.append(np.nan)
            last.append(np.nan)
            continue
        m = max(1, len(y) // 5)
        first.append(float(np.mean(y[:m])))
        last.append(float(np.mean(y[-m:])))
    names = [k.split("/", 1)[1] for k in keys]
    fig = _figure(5.6, max(2.2, 0.45 * len(keys) + 1.2))
    ax = fig.subplots()
    pos = np.arange(len(keys))
    ax.barh(pos + 0.2, first, height=0.4, label="first fifth of training")
    ax.barh(pos - 0.2, last, height=0.4, label="last fifth of training")
    ax.set_yticks(pos, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("violations (logged value)")
    ax.set_title("Constitution: violations per principle", fontsize=11)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="x")
    return figure_png(fig)


def plot_reward_histogram(before: np.ndarray, after: np.ndarray, primary: str) -> bytes | None:
    """The primary judge's score before and after, one histogram each (non-finite values left out)."""
    rb, ra = before, after
    if not np.isfinite(rb).any():
        return None
    fig = _figure(5.6, 3.0)
    ax = fig.subplots()
    both = np.concatenate([rb[np.isfinite(rb)], ra[np.isfinite(ra)]])
    bins = np.linspace(both.min(), both.max() if both.max() > both.min() else both.min() + 1, 31)
    ax.hist(rb[np.isfinite(rb)], bins=bins, alpha=0.55, label="before")
    ax.hist(ra[np.isfinite(ra)], bins=bins, alpha=0.55, label="after")
    ax.set_title(f"Reward ({primary} score)", fontsize=11)
    ax.set_xlabel("score (higher = less toxic)")
    ax.set_ylabel("responses")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def plot_sl_cai(metrics: dict) -> bytes | None:
    """SL-CAI (``sl_metrics.json``): per principle, the self-critique's violation rate of the responses
    before and after revision, and the share of violating responses whose revision was kept."""
    per = metrics.get("principles") or {}
    if not per:
        return None
    names = list(per)
    val = lambda pid, key: np.nan if per[pid][key] is None else float(per[pid][key])  # noqa: E731
    fig = _figure(5.6, max(2.4, 0.5 * len(names) + 1.3))
    ax = fig.subplots()
    pos = np.arange(len(names))
    for offset, key, label in ((-0.27, "violation_rate_before", "violations before revision"),
                               (0.0, "violation_rate_after", "violations after revision"),
                               (0.27, "accepted_share", "revisions kept (share of violations)")):
        ax.barh(pos + offset, [val(p, key) for p in names], height=0.26, label=label)
    ax.set_yticks(pos, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of responses (self-critique)")
    ax.set_title("SL-CAI: self-critique and revision per principle", fontsize=11)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.9)
    ax.grid(alpha=0.3, axis="x")
    return figure_png(fig)


TIER_SHARES = ("curriculum/share_clean", "curriculum/share_ambiguous", "curriculum/share_harmful")
"""The sampler's share of each tier in a PPO batch (``detoxrl.curriculum.sampler``)."""


def plot_tier_mix(rows: Sequence[dict]) -> bytes | None:
    """The tier mix of each PPO batch: the shares of clean, ambiguous and harmful prompts, stacked
    (they sum to 1); ``None`` when no step logged them."""
    steps = [r.get("step", i) for i, r in enumerate(rows)]
    keep = [i for i, r in enumerate(rows)
            if isinstance(steps[i], (int, float)) and all(len(series([r], k)[0]) for k in TIER_SHARES)]
    if not keep:
        return None
    x = np.asarray([float(steps[i]) for i in keep])
    ys = [np.asarray([float(rows[i][k]) for i in keep]) for k in TIER_SHARES]
    fig = _figure()
    ax = fig.subplots()
    labels = [k.rsplit("_", 1)[1] for k in TIER_SHARES]
    ax.stackplot(x, *ys, labels=labels, colors=("C2", "C1", "C3"), alpha=0.75, step="post")
    ax.set_xlim(x.min(), x.max() if x.max() > x.min() else x.min() + 1)
    ax.set_ylim(0, 1)
    ax.set_title("Curriculum: tier mix per batch", fontsize=11)
    ax.set_xlabel("PPO step")
    ax.set_ylabel("share of the batch")
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    ax.grid(alpha=0.3)
    return figure_png(fig)


def plot_dimension_bars(per_dimension: dict) -> bytes | None:
    """Toxic rate per dimension before and after (bars with 95% intervals), one panel per judge group;
    dimensions no judge of a group reports are left out of its panel."""
    groups = [(g, per_dimension[g]) for g in ("reward", "held_out", "all") if g in per_dimension]
    groups = [(g, {d: v for d, v in block.items() if not v.get("absent")}) for g, block in groups]
    groups = [(g, block) for g, block in groups if block]
    if not groups:
        return None
    fig = _figure(3.6 * len(groups), 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(groups))).reshape(-1)
    titles = {"reward": "reward judges", "held_out": "held-out judges", "all": "all judges"}
    num = lambda v: np.nan if v is None else float(v)  # noqa: E731
    for ax, (g, block) in zip(axes, groups):
        dims = list(block)
        pos = np.arange(len(dims))
        top = 0.05
        for offset, side in ((-0.2, "before"), (0.2, "after")):
            vals = np.array([num(block[d][side].get("toxic_rate")) for d in dims])
            cis = [block[d][side].get("toxic_rate_ci95") or [None, None] for d in dims]
            lo, hi = np.array([num(c[0]) for c in cis]), np.array([num(c[1]) for c in cis])
            err = np.clip(np.nan_to_num(np.stack([vals - lo, hi - vals])), 0, None)
            ax.bar(pos + offset, vals, width=0.4, label=side, yerr=err, capsize=3)
            top = max(top, float(np.nanmax(np.concatenate([vals, hi, [0.0]]))))
        ax.set_xticks(pos, dims, fontsize=8)
        ax.set_ylabel("toxic rate")
        ax.set_ylim(0, min(1.0, 1.1 * top) if top < 1 else 1.05)
        ax.set_title(f"per dimension: {titles[g]}", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    return figure_png(fig)
