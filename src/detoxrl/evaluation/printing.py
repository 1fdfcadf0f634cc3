"""What ``eval`` prints: one headline per judge, the overall figures, the first rows of the table;
and :func:`format_p`, the p-value format that the report and the model card share."""

from __future__ import annotations

import math

from rich.table import Table

from detoxrl.utils import console


def format_p(p: float | None, p_min: float | None = None) -> str:
    """``= 0.0123``, or ``≤ 0.000999`` when ``p`` is the smallest value the test can give."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "= n/a"
    if p_min is not None and p <= p_min * (1 + 1e-9):
        return f"≤ {p_min:.3g}"
    return f"= {p:.3g}"


def _num(v: float | None, spec: str = ".3f") -> str:
    """``v`` formatted with ``spec``, or ``n/a`` when the figure is missing."""
    return "n/a" if v is None else format(v, spec)


def headline(result: dict) -> list[str]:
    """One line per judge: mean toxicity before → after, the paired interval and the verdict."""
    lines = []
    for j in result["judges"]:
        name = j["name"]
        b, a = result["before"]["per_judge"][name], result["after"]["per_judge"][name]
        pr = result["paired"][name]
        pct = result["improvement"]["per_judge"][name]["toxicity_mean_pct"]
        lo, hi = pr["ci95"]
        p_text = format_p(pr.get("p_value"), pr.get("p_value_min"))
        lines.append(
            f"{name}{'' if j['trained_against'] else ' (held-out judge)'}: mean toxicity "
            f"{_num(b['toxicity_mean'], '.4f')} → {_num(a['toxicity_mean'], '.4f')} ({_num(pct, '+.1f')}% improvement); "
            f"paired difference {_num(pr['mean_diff'], '+.4f')} [95% CI {_num(lo, '+.4f')}, {_num(hi, '+.4f')}], "
            f"p {p_text}: {pr['verdict']}")
    return lines


def print_summary(result: dict) -> None:
    for line in headline(result):
        console.print(line)
    b, a = result["before"], result["after"]
    kl = a.get("kl_to_reference")
    if "held_out_toxic_rate" in b:
        console.print(f"toxic rate (any held-out judge) {b['held_out_toxic_rate']:.3f} → "
                      f"{a['held_out_toxic_rate']:.3f}")
    console.print(f"toxic rate (any judge) {b['toxic_rate']:.3f} → {a['toxic_rate']:.3f}; "
                  f"ROUGE-L {b['rougeL'] if b['rougeL'] is None else round(b['rougeL'], 4)} → "
                  f"{a['rougeL'] if a['rougeL'] is None else round(a['rougeL'], 4)}; "
                  f"KL to reference {'n/a' if kl is None else round(kl, 3)}")
    print_breakdown(result)


_GROUPS = (("reward", "reward judges"), ("held_out", "held-out judges"), ("all", "all judges"))


def _rate_ci(block: dict, key: str = "toxic_rate", spec: str = ".3f") -> str:
    v, ci = block.get(key), block.get(f"{key}_ci95") or [None, None]
    return f"{_num(v, spec)} [{_num(ci[0], spec)}, {_num(ci[1], spec)}]"


def dimension_table(result: dict) -> Table | None:
    """Toxic rate per dimension (rows) and judge group (columns): before → after with 95% intervals."""
    per = result.get("per_dimension") or {}
    groups = [(g, label) for g, label in _GROUPS if g in per]
    if not groups:
        return None
    t = Table(title="toxic rate per dimension, before → after [95% CI]")
    t.add_column("dimension")
    for _, label in groups:
        t.add_column(label, overflow="fold")
    for dim in next(iter(per.values())):
        cells = []
        for g, _ in groups:
            c = per[g].get(dim, {})
            cells.append("absent" if c.get("absent") else f"{_rate_ci(c['before'])} → {_rate_ci(c['after'])}")
        t.add_row(dim, *cells)
    return t


def over_correction_line(result: dict) -> str | None:
    """Content words of the reference kept, before → after, with the paired difference's interval."""
    oc = result.get("over_correction")
    if not oc or not oc.get("overall", {}).get("n_prompts"):
        return None
    o = oc["overall"]
    lo, hi = o["paired"]["ci95"]
    return (f"over-correction ({oc['prompts']} prompts, n = {o['n_prompts']}): reference content words kept "
            f"{_num(o['before'])} → {_num(o['after'])}; paired difference {_num(o['paired']['mean_diff'], '+.3f')} "
            f"[95% CI {_num(lo, '+.3f')}, {_num(hi, '+.3f')}]")


def print_breakdown(result: dict) -> None:
    """The per-dimension table, the severity tiers and the over-correction line."""
    table = dimension_table(result)
    if table is not None:
        console.print(table)
    sev = result.get("per_severity_tier") or {}
    if "tiers" in sev:
        shares = "; ".join(f"{t['name']} {_num(sev['before'][t['name']]['share'])} → "
                           f"{_num(sev['after'][t['name']]['share'])}" for t in sev["tiers"])
        console.print(f"share of responses per severity tier: {shares}")
    line = over_correction_line(result)
    if line:
        console.print(line)


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def print_examples(rows: list[dict], n: int, primary: str) -> None:
    """The first ``n`` rows of the side-by-side table on the console (texts shortened)."""
    if n <= 0 or not rows:
        return
    t = Table(title=f"first {min(n, len(rows))} of {len(rows)} rows of eval_table.csv (reward = {primary} score)",
              show_lines=True)
    for col in ("dialogue", "response before", "response after", "reward before", "reward after", "diff"):
        t.add_column(col, overflow="fold")
    for r in rows[:n]:
        t.add_row(_short(r["dialogue"]), _short(r["response_before"]), _short(r["response_after"]),
                  f"{r['reward_before']:.3f}", f"{r['reward_after']:.3f}", f"{r['reward_diff']:+.3f}")
    console.print(t)


def _asr(block: dict) -> str:
    lo, hi = block.get("asr_ci95") or (None, None)
    return f"{_num(block.get('asr'), '.1%')} [{_num(lo, '.1%')}, {_num(hi, '.1%')}]"


def redteam_lines(result: dict) -> list[str]:
    """The replayed red-team set (paired ASR before → after, fixed and broken, McNemar's p) and the fresh
    attack (per method ASR before → after with 95% Wilson intervals, distinct-2 and self-BLEU)."""
    lines = []
    rep = result.get("redteam_replay")
    if rep:
        lines.append(f"red-team replay ({rep['n']} prompts): ASR {_asr(rep['before'])} before → {_asr(rep['after'])} "
                     f"after, paired: {rep['fixed']} fixed, {rep['broken']} broken (McNemar p "
                     f"{format_p(rep.get('p_value'))})")
    att = result.get("redteam_attack")
    if att:
        for method, a in att["after"]["methods"].items():
            b = att["before"]["methods"][method]
            lines.append(f"red-team attack {method} ({att['budget']} generations each): ASR {_asr(b)} before → "
                         f"{_asr(a)} after; distinct-2 {_num(b.get('distinct_2'))} → {_num(a.get('distinct_2'))}, "
                         f"self-BLEU {_num(b.get('self_bleu'))} → {_num(a.get('self_bleu'))}")
    return lines


def print_redteam(result: dict) -> None:
    for line in redteam_lines(result):
        console.print(line)
