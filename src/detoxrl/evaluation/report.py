"""The ``report`` stage: one self-contained HTML page, ``report.html`` in the run folder.

The page needs nothing but a browser: plots are PNG images embedded as base64 ``data:`` URIs (drawn
with matplotlib's Agg renderer), the style sheet is inline, there is no script, and a
Content-Security-Policy forbids loading anything from elsewhere. It shows, from whatever the run has
produced (a missing piece is shown as "not run"):

1. the headline: each judge's mean toxicity before → after with the paired interval and verdict;
2. the metrics table with 95% confidence intervals (``eval.json``), overall and per judge;
3. training curves (``ppo/metrics.jsonl``): reward and its components, KL and its coefficient,
   policy entropy / clipping / approximate KL, value loss and explained variance, length and speed;
4. per-principle constitution violations (``constitution/*`` keys) and the curriculum stage over time
   (``curriculum/*`` keys) when they were logged;
5. toxicity distributions before and after, per judge (``eval_table.csv``);
6. the most improved and most worsened examples (by the primary judge's reward difference);
7. the run's configuration.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from detoxrl.config import Config
from detoxrl.evaluation.printing import format_p
from detoxrl.evaluation.table import judge_columns, read_eval_table, table_judges, to_float
from detoxrl.utils import atomic_write_text

REPORT_FILE = "report.html"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_REWARD_AGGREGATES = {"reward/mean", "reward/std", "reward/normalized_mean", "reward/non_score"}


# --------------------------------------------------------------------------------------- reading
def read_metrics(path: Path) -> tuple[list[dict], int]:
    """Rows of ``metrics.jsonl`` that parse as JSON objects, and the number of lines skipped.

    A run killed mid-write can leave a torn last line; such lines are skipped, not fatal.
    """
    rows, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad += 1
    return rows, bad


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


def metric_keys(rows: Sequence[dict], prefix: str) -> list[str]:
    """Numeric keys that start with ``prefix``, in first-seen order."""
    seen: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k.startswith(prefix) and isinstance(v, (int, float)) and not isinstance(v, bool):
                seen.setdefault(k, None)
    return list(seen)


# ---------------------------------------------------------------------------------------- plotting
def _figure(width: float = 5.6, height: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


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
               twin: Sequence[str] = (), band: tuple[str, str] | None = None, step_keys: Sequence[str] = ()) -> bytes | None:
    """One training-curve panel: ``keys`` on the left axis, ``twin`` on a right axis; ``None`` if empty.

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
        ax2.set_ylabel(", ".join(twin), fontsize=8)
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


# ------------------------------------------------------------------------------------------- html
def esc(x: Any) -> str:
    return html.escape(str(x))


def fmt(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(v, spec)
    return esc(v)


def fmt_ci(v: Any, ci: Any, spec: str = ".4f") -> str:
    if ci is None or not isinstance(ci, (list, tuple)) or len(ci) != 2 or None in ci:
        return fmt(v, spec)
    return f'{fmt(v, spec)} <span class="ci">[{fmt(ci[0], spec)}, {fmt(ci[1], spec)}]</span>'


def not_run(what: str, why: str) -> str:
    return f'<p class="notrun"><strong>{esc(what)}: not run</strong> — {esc(why)}</p>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n{body}\n</section>'


def figure(png: bytes | None, alt: str, caption: str = "", wide: bool = False) -> str:
    if png is None:
        return ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    cls = ' class="wide"' if wide else ""
    return f"<figure{cls}>{img_tag(png, alt)}{cap}</figure>"


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table from already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


# ---------------------------------------------------------------------------------------- sections
def headline_section(ev: dict | None) -> str:
    if ev is None:
        return not_run("Evaluation", "no eval.json in the run folder; run `detoxrl eval`")
    items = []
    for j in ev.get("judges", []):
        name = j["name"]
        pr = ev.get("paired", {}).get(name)
        b = ev["before"]["per_judge"].get(name, {})
        a = ev["after"]["per_judge"].get(name, {})
        pct = ev.get("improvement", {}).get("per_judge", {}).get(name, {}).get("toxicity_mean_pct")
        if pr is None:
            continue
        verdict = pr.get("verdict", "")
        cls = {"less toxic": "good", "more toxic": "bad"}.get(verdict, "neutral")
        role = "trained against" if j.get("trained_against") else "held-out judge"
        items.append(
            f'<li><strong>{esc(name)}</strong> <span class="role">({role})</span>: mean toxicity '
            f"{fmt(b.get('toxicity_mean'))} → {fmt(a.get('toxicity_mean'))} "
            f"({fmt(pct, '+.1f')}% improvement); paired difference {fmt(pr.get('mean_diff'), '+.4f')} "
            f"<span class=\"ci\">[{fmt(pr['ci95'][0], '+.4f')}, {fmt(pr['ci95'][1], '+.4f')}]</span>, "
            f"p {esc(format_p(pr.get('p_value'), pr.get('p_value_min')))} — <span class=\"verdict {cls}\">{esc(verdict)}</span></li>")
    n = ev.get("n_prompts")
    k = ev.get("samples", 1)
    intro = (f"<p>{fmt(n, 'd')} held-out prompts of split <code>{esc(ev.get('split'))}</code>, "
             f"{fmt(k, 'd')} response(s) each; intervals are 95% bootstrap intervals over prompts; "
             f"negative differences mean less toxic after training.</p>")
    return intro + "<ul class=\"headline\">" + "\n".join(items) + "</ul>"


def metrics_section(ev: dict | None) -> str:
    if ev is None:
        return not_run("Evaluation", "no eval.json in the run folder")
    b, a = ev["before"], ev["after"]
    primary = ev.get("primary_judge", "")
    imp = ev.get("improvement", {})

    def row(label, key, spec=".4f", ci_key=None, change=""):
        return [label, fmt_ci(b.get(key), b.get(ci_key or f"{key}_ci95"), spec),
                fmt_ci(a.get(key), a.get(ci_key or f"{key}_ci95"), spec), change]

    pj = f" ({esc(primary)})"
    rows = [
        row(f"toxicity mean{pj}", "toxicity_mean", ci_key="toxicity_ci95", change=f"{fmt(imp.get('toxicity_mean_pct'), '+.1f')}% improvement"),
        row(f"toxicity std{pj}", "toxicity_std", change=f"{fmt(imp.get('toxicity_std_pct'), '+.1f')}% improvement"),
        row("toxic rate (any judge)", "toxic_rate", change=f"{fmt(imp.get('toxic_rate_abs'), '+.4f')} fewer"),
        row(f"reward mean{pj}", "reward_mean", ci_key="reward_ci95",
            change=f"{fmt(imp.get('reward_mean_diff'), '+.4f')}"),
    ]
    if "expected_max_toxicity" in b:
        rows.append(row(f"expected max toxicity{pj}", "expected_max_toxicity"))
    rows += [row("ROUGE-1", "rouge1"), row("ROUGE-2", "rouge2"), row("ROUGE-L", "rougeL"),
             row("response length (tokens)", "length_mean", ".2f"), row("distinct-1", "distinct_1"),
             row("distinct-2", "distinct_2"),
             ["KL to reference (nats / response)", "–",
              fmt_ci(a.get("kl_to_reference"), a.get("kl_to_reference_ci95")), ""]]
    overall = html_table(["metric", "before (reference)", "after (trained)", "change"], rows, "metrics nowrap")

    jrows = []
    for j in ev.get("judges", []):
        n = j["name"]
        pb, pa = b["per_judge"].get(n, {}), a["per_judge"].get(n, {})
        pr = ev.get("paired", {}).get(n, {})
        jrows.append([
            f"<strong>{esc(n)}</strong><br><span class=\"small\">{esc(j.get('type'))}: {esc(j.get('model'))}</span>",
            "yes" if j.get("trained_against") else "no (held out)",
            fmt(j.get("threshold"), ".2f"),
            fmt_ci(pb.get("toxicity_mean"), pb.get("toxicity_ci95")),
            fmt_ci(pa.get("toxicity_mean"), pa.get("toxicity_ci95")),
            fmt_ci(pb.get("toxic_rate"), pb.get("toxic_rate_ci95"), ".3f"),
            fmt_ci(pa.get("toxic_rate"), pa.get("toxic_rate_ci95"), ".3f"),
            fmt_ci(pr.get("mean_diff"), pr.get("ci95"), "+.4f"),
            f"{esc(format_p(pr.get('p_value'), pr.get('p_value_min')).lstrip('= '))} / "
            f"{fmt(pr.get('sign_test_p'), '.3g')}",
            esc(pr.get("verdict", "")),
        ])
    per_judge = html_table(["judge", "trained against", "threshold", "toxicity before", "toxicity after",
                            "toxic rate before", "toxic rate after", "paired difference",
                            "p (sign-flip / sign test)", "verdict"], jrows, "metrics")
    per_judge = f'<div class="scroll">{per_judge}</div>'
    t = ev.get("timing", {})
    dec = ev.get("decoding", {})
    note = (f"<p class=\"small\">Decoding: {'sampling' if dec.get('do_sample') else 'greedy'}, "
            f"max {fmt(dec.get('max_new_tokens'), 'd')} new tokens; seed {fmt(ev.get('seed'), 'd')}. "
            f"Time: generation {fmt(t.get('generation_s'), '.1f')} s, KL {fmt(t.get('kl_s'), '.1f')} s, "
            f"judges {fmt(t.get('judging_s'), '.1f')} s, total {fmt(t.get('total_s'), '.1f')} s. "
            f"Toxicity and reward figures without a judge name in the first table are the primary judge's "
            f"(<code>{esc(primary)}</code>).</p>")
    return f"<h3>Overall</h3>{overall}<h3>Per judge</h3>{per_judge}{note}"


def training_section(rows: list[dict] | None, why: str, skipped: int = 0) -> str:
    if not rows:
        return not_run("PPO training", why)
    comps = [k for k in metric_keys(rows, "reward/") if k not in _REWARD_AGGREGATES]
    panels = [
        (plot_panel(rows, "Reward (primary judge score)", ["reward/mean"], band=("reward/mean", "reward/std")),
         "Reward: mean judge score per batch, shaded ± one standard deviation"),
        (plot_panel(rows, "Reward per judge", [k for k in comps if k.startswith("reward/judge/")]),
         "Each judge's score per batch"),
        (plot_panel(rows, "Reward components", [k for k in comps if not k.startswith("reward/judge/")]),
         "Reward components: per dimension, severity and other terms"),
        (plot_panel(rows, "KL to the reference and its coefficient", ["kl/mean"], twin=["kl/coef"]),
         "Per-response KL (left) and the KL penalty coefficient (right)"),
        (plot_panel(rows, "Policy", ["policy/entropy"], twin=["policy/clipfrac", "policy/approx_kl"]),
         "Entropy (left), clipped fraction and approximate KL of the PPO update (right)"),
        (plot_panel(rows, "Value function", ["value/loss"], twin=["value/explained_variance"]),
         "Value loss (left) and explained variance (right)"),
        (plot_panel(rows, "Responses and speed", ["response/length"], twin=["perf/tokens_per_s"]),
         "Mean response length in tokens (left) and throughput in tokens/s (right)"),
    ]
    figs = [figure(p, cap, cap) for p, cap in panels if p is not None]
    n_steps = len(rows)
    last = rows[-1]
    summary = (f"<p>{n_steps} logged steps; last step {esc(last.get('step', n_steps - 1))}: reward "
               f"{fmt(last.get('reward/mean'))}, KL {fmt(last.get('kl/mean'))}, "
               f"KL coefficient {fmt(last.get('kl/coef'))}.</p>")
    if skipped:
        summary += f"<p class=\"small\">{skipped} unreadable line(s) of metrics.jsonl were skipped.</p>"
    return summary + '<div class="grid">' + "".join(figs) + "</div>"


def constitution_section(rows: list[dict] | None) -> str:
    keys = metric_keys(rows or [], "constitution/")
    if not keys:
        return not_run("Constitution", "no constitution/* metrics were logged (constitution disabled)")
    line = plot_panel(rows, "Constitution: violations over training", keys)
    bars = plot_constitution_bars(rows, keys)
    return ('<div class="grid">' + figure(line, "constitution violations over time",
                                          "Logged violations per principle over PPO steps")
            + figure(bars, "constitution violations per principle",
                     "Per principle: first fifth vs last fifth of training") + "</div>")


def curriculum_section(rows: list[dict] | None, enabled: bool = True) -> str:
    """Curriculum figures over time; the uniform sampler of a run without curriculum also logs
    ``curriculum/*`` keys (competence 1), so a disabled curriculum shows as not run."""
    keys = metric_keys(rows or [], "curriculum/")
    if not enabled and "curriculum/stage" not in keys:
        return not_run("Curriculum", "curriculum.enabled is false in the config (prompts sampled uniformly)")
    if not keys:
        return not_run("Curriculum", "no curriculum/* metrics were logged")
    stage = [k for k in keys if k == "curriculum/stage"]
    others = [k for k in keys if k != "curriculum/stage"]
    png = plot_panel(rows, "Curriculum over time", [], step_keys=stage, twin=others) if stage else \
        plot_panel(rows, "Curriculum over time", others)
    return '<div class="grid">' + figure(png, "curriculum over time",
                                         "Curriculum stage (steps) and the other curriculum figures") + "</div>"


def _table_arrays(table: list[dict], judges: Sequence[str]) -> tuple[dict, dict]:
    before, after = {}, {}
    for j in judges:
        cb, ca = judge_columns(j)
        before[j] = np.array([to_float(r.get(cb)) for r in table])
        after[j] = np.array([to_float(r.get(ca)) for r in table])
        before[j], after[j] = before[j][np.isfinite(before[j])], after[j][np.isfinite(after[j])]
    return before, after


def distributions_section(table: list[dict] | None, ev: dict | None) -> str:
    if not table:
        return not_run("Toxicity distributions", "no eval_table.csv in the run folder")
    judges = table_judges(list(table[0]))
    thresholds = {j["name"]: j.get("threshold") for j in (ev or {}).get("judges", []) if j.get("threshold") is not None}
    before, after = _table_arrays(table, judges)
    png = plot_histograms(before, after, judges, thresholds)
    rb = np.array([to_float(r.get("reward_before")) for r in table])
    ra = np.array([to_float(r.get("reward_after")) for r in table])
    reward_png = None
    if np.isfinite(rb).any():
        fig = _figure(5.6, 3.0)
        ax = fig.subplots()
        both = np.concatenate([rb[np.isfinite(rb)], ra[np.isfinite(ra)]])
        bins = np.linspace(both.min(), both.max() if both.max() > both.min() else both.min() + 1, 31)
        ax.hist(rb[np.isfinite(rb)], bins=bins, alpha=0.55, label="before")
        ax.hist(ra[np.isfinite(ra)], bins=bins, alpha=0.55, label="after")
        primary = (ev or {}).get("primary_judge", "primary judge")
        ax.set_title(f"Reward ({primary} score)", fontsize=11)
        ax.set_xlabel("score (higher = less toxic)")
        ax.set_ylabel("responses")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        reward_png = figure_png(fig)
    return ('<div class="grid">'
            + figure(png, "toxicity histograms before and after",
                     f"Toxicity of all {len(table)} responses before and after, per judge (counts on a log "
                     "scale, so that the toxic tail shows)", wide=True)
            + figure(reward_png, "reward histogram before and after", "Primary judge's score before and after")
            + "</div>")


def _clip_text(s: str, n: int = 700) -> str:
    s = s or ""
    if len(s) <= n:
        return f"<div class=\"text\">{esc(s)}</div>"
    return (f"<details><summary>{esc(s[:n])}…</summary><div class=\"text\">{esc(s)}</div></details>")


def examples_section(table: list[dict] | None, ev: dict | None, n: int) -> str:
    if not table:
        return not_run("Examples", "no eval_table.csv in the run folder")
    if n <= 0:
        return "<p>report.examples is 0.</p>"
    judges = table_judges(list(table[0]))
    scored = [(to_float(r.get("reward_diff")), i) for i, r in enumerate(table)]
    scored = [(d, i) for d, i in scored if math.isfinite(d)]
    improved = [i for d, i in sorted(scored, key=lambda t: (-t[0], t[1])) if d > 0][:n]
    worsened = [i for d, i in sorted(scored, key=lambda t: (t[0], t[1])) if d < 0][:n]
    primary = (ev or {}).get("primary_judge", "primary judge")

    def block(indices: list[int], title: str) -> str:
        if not indices:
            return f"<h3>{esc(title)}</h3><p>none.</p>"
        header = ["dialogue", "reference summary", "response before", "response after",
                  f"reward before / after / diff ({esc(primary)})", "toxicity before → after"]
        rows = []
        for i in indices:
            r = table[i]
            tox = "<br>".join(
                f"{esc(j)}: {fmt(to_float(r.get(judge_columns(j)[0])), '.3f')} → "
                f"{fmt(to_float(r.get(judge_columns(j)[1])), '.3f')}" for j in judges)
            rows.append([
                _clip_text(r.get("dialogue", "")) + f"<span class=\"small\">{esc(r.get('id', ''))}</span>",
                _clip_text(r.get("reference_summary", ""), 400),
                _clip_text(r.get("response_before", ""), 400), _clip_text(r.get("response_after", ""), 400),
                f"{fmt(to_float(r.get('reward_before')), '.3f')} / {fmt(to_float(r.get('reward_after')), '.3f')}"
                f" / <strong>{fmt(to_float(r.get('reward_diff')), '+.3f')}</strong>",
                tox,
            ])
        return f"<h3>{esc(title)}</h3>" + html_table(header, rows, "examples")

    return (block(improved, f"Most improved (largest reward increase, top {n})")
            + block(worsened, f"Most worsened (largest reward decrease, top {n})"))


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
header{background:#1f3b57;color:#fff;padding:22px 28px}
header h1{margin:0 0 4px;font-size:24px} header p{margin:0;opacity:.85;font-size:14px}
nav{font-size:13px;margin:10px 0 0} nav a{color:#cfe3ff;margin-right:14px}
section{background:#fff;border:1px solid #e1e5ea;border-radius:8px;padding:14px 20px;margin:18px 0}
h2{font-size:19px;margin:4px 0 12px;color:#1f3b57} h3{font-size:15px;margin:16px 0 8px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:6px 0 10px}
th,td{border:1px solid #e1e5ea;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6} table.metrics td{font-variant-numeric:tabular-nums}
table.nowrap td:not(:first-child){white-space:nowrap} .scroll{overflow-x:auto}
table.examples td{max-width:260px} .text{white-space:pre-wrap;word-break:break-word}
details summary{cursor:pointer;white-space:pre-wrap}
.ci{color:#5b6672;font-size:12px} .small{color:#5b6672;font-size:12px}
.notrun{color:#6b5b00;background:#fff8db;border:1px solid #f0e1a0;padding:8px 12px;border-radius:6px}
.grid{display:flex;flex-wrap:wrap;gap:12px} figure{margin:0;flex:1 1 520px} figure.wide{flex-basis:100%}
figure img{max-width:100%;height:auto;border:1px solid #eef0f2}
figcaption{font-size:12px;color:#5b6672;margin-top:2px}
ul.headline{padding-left:20px} ul.headline li{margin:6px 0}
.verdict{font-weight:600;padding:1px 6px;border-radius:4px}
.verdict.good{background:#dff5e3;color:#135c22} .verdict.bad{background:#fde2e1;color:#8a1c15}
.verdict.neutral{background:#eceff3;color:#3a4550} .role{color:#5b6672;font-size:12px}
pre{background:#f6f8fa;border:1px solid #e1e5ea;padding:10px;overflow:auto;font-size:12px}
"""


def render_page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    body = "\n".join(section(a, t, b) for a, t, b in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p><nav>{nav}</nav></header>\n"
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------------------------------------- run
def _safe(fn: Callable[[], str], what: str) -> str:
    """Run a section builder; a broken input file shows as a note instead of failing the report."""
    try:
        return fn()
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return not_run(what, f"could not read its input ({type(exc).__name__}: {exc})")


def build_report(cfg: Config) -> Path:
    """Write ``report.html`` (self-contained) into the run folder and return its path."""
    run = cfg.run_path
    metrics_path = cfg.path("{run_dir}/ppo/metrics.jsonl")
    rows: list[dict] | None = None
    bad = 0
    why = f"no {metrics_path.name} in {metrics_path.parent}; run `detoxrl ppo`"
    if metrics_path.exists():
        rows, bad = read_metrics(metrics_path)
        if not rows:
            why = f"{metrics_path} holds no metrics"
    ev = None
    eval_path = run / "eval.json"
    ev_note = ""
    if eval_path.exists():
        try:
            ev = json.loads(eval_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            ev_note = not_run("Evaluation", f"eval.json could not be read ({exc})")
    table = None
    table_path = run / "eval_table.csv"
    if table_path.exists():
        try:
            table = read_eval_table(table_path)
        except (OSError, ValueError, UnicodeDecodeError):
            table = None

    sections = [
        ("summary", "Summary", ev_note or _safe(lambda: headline_section(ev), "Evaluation")),
        ("metrics", "Evaluation metrics", ev_note or _safe(lambda: metrics_section(ev), "Evaluation")),
        ("training", "Training curves", _safe(lambda: training_section(rows, why, bad), "PPO training")),
        ("constitution", "Constitution", _safe(lambda: constitution_section(rows), "Constitution")),
        ("curriculum", "Curriculum", _safe(lambda: curriculum_section(rows, cfg.curriculum.enabled), "Curriculum")),
        ("distributions", "Toxicity before and after",
         _safe(lambda: distributions_section(table, ev), "Toxicity distributions")),
        ("examples", "Examples", _safe(lambda: examples_section(table, ev, cfg.report.examples), "Examples")),
        ("config", "Configuration", "<details><summary>The run's configuration (YAML, as resolved)</summary>"
                                    f"<pre>{esc(cfg.to_yaml())}</pre></details>"),
    ]
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    subtitle = (f"run {cfg.name} · policy {cfg.resolve(cfg.policy.name_or_path)} → "
                f"{cfg.resolve(cfg.ppo.output_dir)} · written {stamp}")
    page = render_page(f"detoxrl report — {cfg.name}", subtitle, sections)
    out = run / REPORT_FILE
    atomic_write_text(out, page)
    return out
