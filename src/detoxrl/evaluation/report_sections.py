"""The report's sections, each from whatever the run produced (``None``: that part was not run).

Every ``*_section`` function returns an HTML fragment; a missing input gives a "not run" note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from detoxrl.evaluation.printing import format_p
from detoxrl.evaluation.report_html import esc, figure, fmt, fmt_ci, html_table, not_run
from detoxrl.evaluation.report_plots import (
    TIER_SHARES,
    plot_constitution_bars,
    plot_histograms,
    plot_panel,
    plot_reward_histogram,
    plot_tier_mix,
)
from detoxrl.evaluation.table import judge_columns, table_judges, to_float

_REWARD_AGGREGATES = {"reward/mean", "reward/std", "reward/normalized_mean", "reward/non_score"}


def metric_keys(rows: Sequence[dict], prefix: str) -> list[str]:
    """Numeric keys that start with ``prefix``, in first-seen order."""
    seen: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k.startswith(prefix) and isinstance(v, (int, float)) and not isinstance(v, bool):
                seen.setdefault(k, None)
    return list(seen)


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


_PROBE_TWIN = ["probe/toxic_rate_trained", "probe/toxic_rate_heldout", "probe/rougeL"]
_SHOWN_WARNINGS = 5


def probe_section(rows: list[dict] | None, info: dict | None) -> str:
    """The probe's figures per step (``probe/*`` keys), its reward-hacking warnings and why PPO stopped
    (``info``: ``stop`` and ``warnings`` as the PPO stage records them)."""
    info = info or {}
    stop, warnings = info.get("stop"), list(info.get("warnings") or [])
    png = plot_panel(rows or [], "Probe of held-out prompts (greedy)", ["probe/reward_mean"], ylabel="reward",
                     twin=_PROBE_TWIN, twin_label="toxic rate, ROUGE-L")
    if png is None and not stop and not warnings:
        return not_run("Probes", "no probe/* metrics were logged (ppo.probe_every is 0)")
    parts = []
    if stop:
        parts.append(f"<p><strong>Stopped after step {esc(stop.get('step'))}:</strong> {esc(stop.get('reason'))}.</p>")
    for w in warnings[:_SHOWN_WARNINGS]:
        parts.append(f'<p class="warn"><strong>Warning at step {esc(w.get("step"))}:</strong> {esc(w.get("message"))}</p>')
    if len(warnings) > _SHOWN_WARNINGS:
        parts.append(f"<p class=\"small\">… and {len(warnings) - _SHOWN_WARNINGS} more in ppo/warnings.jsonl.</p>")
    if png is None:
        return "".join(parts) + "<p>No probes were taken (ppo.probe_every is 0).</p>"
    if not warnings:
        parts.append("<p>No reward-hacking warning: over no window of probes did the trained-against reward "
                     "improve while the held-out toxic rate rose or ROUGE-L fell.</p>")
    caption = ("Greedy responses to the probe's held-out prompts: the composite reward (left), the toxic rate of "
               "the judges trained against and of the held-out judges, and ROUGE-L (right)")
    return "".join(parts) + '<div class="grid">' + figure(png, "probe figures per step", caption) + "</div>"


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
    ``curriculum/*`` keys (competence 1), so a disabled curriculum shows as not run, unless the
    prompts' tiers were known: then its tier mix is shown (the uniform arm of an ablation)."""
    rows = rows or []
    keys = metric_keys(rows, "curriculum/")
    mix = plot_tier_mix(rows)
    mix_fig = figure(mix, "tier mix per PPO step",
                     "Share of clean, ambiguous and harmful prompts in each PPO batch (stacked)") if mix else ""
    if not enabled and "curriculum/stage" not in keys:
        if mix:
            return ("<p>curriculum.enabled is false in the config (prompts sampled uniformly); the prompts' tiers "
                    'were known, so their mix per batch is shown.</p><div class="grid">' + mix_fig + "</div>")
        return not_run("Curriculum", "curriculum.enabled is false in the config (prompts sampled uniformly)")
    if not keys:
        return not_run("Curriculum", "no curriculum/* metrics were logged")
    stage = [k for k in keys if k == "curriculum/stage"]
    others = [k for k in keys if k != "curriculum/stage" and k not in TIER_SHARES]
    png = plot_panel(rows, "Curriculum over time", [], step_keys=stage, twin=others) if stage else \
        plot_panel(rows, "Curriculum over time", others)
    return '<div class="grid">' + figure(png, "curriculum over time",
                                         "Curriculum stage (steps) and the other curriculum figures") + mix_fig + "</div>"


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
    reward_png = plot_reward_histogram(rb, ra, (ev or {}).get("primary_judge", "primary judge"))
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
