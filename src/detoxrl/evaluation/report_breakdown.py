"""The report's section "By type and severity": ``eval.json``'s ``per_dimension``, ``per_severity_tier``,
``per_prompt_tier`` and ``over_correction`` blocks (:mod:`detoxrl.evaluation.breakdown`)."""

from __future__ import annotations

from detoxrl.evaluation.printing import format_p, over_correction_line
from detoxrl.evaluation.report_html import esc, figure, fmt, fmt_ci, html_table, not_run
from detoxrl.evaluation.report_plots import plot_dimension_bars

_GROUP_TITLES = {"reward": "reward judges (trained against)", "held_out": "held-out judges", "all": "all judges"}


def _dimension_table(per: dict) -> str:
    rows, absent = [], []
    for g, block in per.items():
        missing = [dim for dim, c in block.items() if c.get("absent")]
        if missing:
            absent.append(f"{esc(_GROUP_TITLES.get(g, g))}: {esc(', '.join(missing))}")
        for dim, c in block.items():
            if c.get("absent"):
                continue
            b, a, pr = c["before"], c["after"], c["paired"]
            rows.append([esc(_GROUP_TITLES.get(g, g)), esc(dim), esc(", ".join(c.get("judges", []))),
                         fmt_ci(b.get("toxic_rate"), b.get("toxic_rate_ci95"), ".3f"),
                         fmt_ci(a.get("toxic_rate"), a.get("toxic_rate_ci95"), ".3f"),
                         fmt_ci(pr.get("mean_diff"), pr.get("ci95"), "+.4f")
                         + f" <span class=\"small\">p {esc(format_p(pr.get('p_value'), pr.get('p_value_min')))}</span>",
                         esc(pr.get("verdict", ""))])
    return '<div class="scroll">' + html_table(
        ["judges", "dimension", "reported by", "toxic rate before", "toxic rate after", "paired difference",
         "verdict"], rows, "metrics") + "</div>" + (
        f"<p class=\"small\">Absent (no judge of the group reports the dimension): {'; '.join(absent)}.</p>"
        if absent else "")


def _severity_table(sev: dict) -> str:
    if "tiers" not in sev:
        return f"<p class=\"small\">Severity tiers: {esc(sev.get('note', 'not reported'))}.</p>"
    rows = [[esc(t["name"]), fmt(t["min_severity"], ".2f"),
             fmt_ci(sev["before"][t["name"]]["share"], sev["before"][t["name"]]["share_ci95"], ".3f"),
             fmt_ci(sev["after"][t["name"]]["share"], sev["after"][t["name"]]["share_ci95"], ".3f")]
            for t in sev["tiers"]]
    below = sev.get("below_tiers", {})
    rows.append(["below every tier", "", fmt_ci(below.get("before", {}).get("share"), below.get("before", {}).get("share_ci95"), ".3f"),
                 fmt_ci(below.get("after", {}).get("share"), below.get("after", {}).get("share_ci95"), ".3f")])
    judges = ", ".join(sev.get("judges", []))
    return (f"<h3>Severity tiers</h3><p class=\"small\">Severity of a response: the largest severity of the "
            f"reward judges ({esc(judges)}).</p>"
            + html_table(["tier", "from severity", "share before", "share after"], rows, "metrics nowrap"))


def _prompt_tier_table(pt: dict) -> str:
    if "tiers" not in pt:
        return f"<p class=\"small\">Per prompt tier: {esc(pt.get('note', 'not reported'))}.</p>"
    rows = []
    for t, e in pt["tiers"].items():
        b, a = e.get("before", {}), e.get("after", {})
        rows.append([esc(t), fmt(e.get("n_prompts"), "d"),
                     fmt_ci(b.get("primary_toxic_rate"), b.get("primary_toxic_rate_ci95"), ".3f"),
                     fmt_ci(a.get("primary_toxic_rate"), a.get("primary_toxic_rate_ci95"), ".3f"),
                     fmt_ci(b.get("held_out_toxic_rate"), b.get("held_out_toxic_rate_ci95"), ".3f"),
                     fmt_ci(a.get("held_out_toxic_rate"), a.get("held_out_toxic_rate_ci95"), ".3f")])
    return (f"<h3>Per prompt tier</h3><p class=\"small\">Tier of a prompt: its column "
            f"<code>{esc(pt.get('column'))}</code>.</p>"
            + html_table(["prompt tier", "prompts", "primary judge before", "primary judge after",
                          "any held-out judge before", "any held-out judge after"], rows, "metrics nowrap"))


def breakdown_section(ev: dict | None) -> str:
    if ev is None:
        return not_run("By type and severity", "no eval.json in the run folder")
    per = ev.get("per_dimension")
    if per is None:
        return not_run("By type and severity", "eval.json has no per_dimension block (written by an older version)")
    png = plot_dimension_bars(per)
    parts = ["<p>A response is toxic in a dimension when a judge that reports the dimension scores it at or "
             "above that judge's threshold; paired differences are per prompt (negative = less toxic).</p>",
             _dimension_table(per),
             '<div class="grid">' + figure(png, "toxic rate per dimension before and after",
                                           "Toxic rate per dimension, before and after (95% intervals)") + "</div>",
             _severity_table(ev.get("per_severity_tier") or {}),
             _prompt_tier_table(ev.get("per_prompt_tier") or {})]
    line = over_correction_line(ev)
    parts.append(f"<h3>Over-correction</h3><p>{esc(line)}.</p>" if line else
                 "<h3>Over-correction</h3><p>no prompt with a reference that has content words.</p>")
    return "".join(parts)
