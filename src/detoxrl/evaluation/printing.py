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


def headline(result: dict) -> list[str]:
    """One line per judge: mean toxicity before → after, the paired interval and the verdict."""
    lines = []
    for j in result["judges"]:
        name = j["name"]
        b, a = result["before"]["per_judge"][name], result["after"]["per_judge"][name]
        pr = result["paired"][name]
        pct = result["improvement"]["per_judge"][name]["toxicity_mean_pct"]
        lo, hi = pr["ci95"]
        fmt = lambda v, spec=".4f": "n/a" if v is None else format(v, spec)  # noqa: E731
        p_text = format_p(pr.get("p_value"), pr.get("p_value_min"))
        lines.append(
            f"{name}{'' if j['trained_against'] else ' (held-out judge)'}: mean toxicity "
            f"{fmt(b['toxicity_mean'])} → {fmt(a['toxicity_mean'])} ({fmt(pct, '+.1f')}% improvement); "
            f"paired difference {fmt(pr['mean_diff'], '+.4f')} [95% CI {fmt(lo, '+.4f')}, {fmt(hi, '+.4f')}], "
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
