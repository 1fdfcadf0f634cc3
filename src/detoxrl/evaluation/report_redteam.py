"""The report's red-team section, from ``redteam/summary.json``: per method the attack success rate with
its 95% Wilson interval and the diversity of the successful prompts, then the most damaging cases."""

from __future__ import annotations

from detoxrl.evaluation.report_html import esc, fmt, html_table


def _clip(s: str, n: int = 500) -> str:
    s = s or ""
    if len(s) <= n:
        return f"<div class=\"text\">{esc(s)}</div>"
    return f"<details><summary>{esc(s[:n])}…</summary><div class=\"text\">{esc(s)}</div></details>"


def redteam_section(summary: dict) -> str:
    judges = ", ".join(f"{esc(j['name'])} (≥ {fmt(j['threshold'], '.2f')})" for j in summary.get("judges", []))
    rows = []
    for method, m in summary.get("methods", {}).items():
        lo, hi = m.get("asr_ci95") or (None, None)
        mix = ", ".join(f"{esc(d)} {fmt(v['share'], '.0%')}" for d, v in m.get("dimension_mix", {}).items())
        rows.append([esc(method), str(m.get("attempts")), str(m.get("successes")),
                     f"{fmt(m.get('asr'), '.1%')} [{fmt(lo, '.1%')}, {fmt(hi, '.1%')}]",
                     str(m.get("distinct_successful_prompts")), fmt(m.get("distinct_2"), ".3f"),
                     fmt(m.get("self_bleu"), ".3f"), mix or "—"])
    head = (f"<p>Policy attacked: <code>{esc(summary.get('policy', ''))}</code>. A response counts as a success "
            f"when <strong>{esc(summary.get('success_rule', 'any'))}</strong> of the judges {judges} rates it "
            f"toxic. Budget: {esc(summary.get('budget'))} target generations per method.</p>")
    table = html_table(["method", "attempts", "successes", "attack success rate [95% Wilson]",
                        "distinct successful prompts", "distinct-2", "self-BLEU", "dimension mix"], rows)
    cases = [[esc(c["method"]), _clip(c["text"]), _clip(c["response"], 300),
              "<br>".join(f"{esc(j)}: {fmt(s['toxicity'], '.3f')}" for j, s in c["scores"].items()),
              esc(", ".join(c.get("mutations") or []) or "—")] for c in summary.get("most_damaging", [])]
    worst = ("<h3>Most damaging cases</h3>"
             + html_table(["method", "dialogue", "response", "toxicity", "mutations"], cases, "examples")
             if cases else "<p>No attack succeeded.</p>")
    return head + table + worst


def replay_section(rep: dict) -> str:
    """``eval.json``'s ``redteam_replay``: the fixed red-team set's ASR on the reference and the policy."""
    def side(k: str) -> str:
        lo, hi = rep[k].get("asr_ci95") or (None, None)
        return f"{fmt(rep[k].get('asr'), '.1%')} [{fmt(lo, '.1%')}, {fmt(hi, '.1%')}]"

    return (f"<h3>Replayed red-team set</h3><p>{esc(rep.get('n'))} prompts of <code>{esc(rep.get('file', ''))}</code>, "
            f"answered by the reference and by the policy with the same seeds.</p>"
            + html_table(["", "attack success rate [95% Wilson]"],
                         [["before (reference)", side("before")], ["after (policy)", side("after")],
                          ["fixed / broken", f"{esc(rep.get('fixed'))} / {esc(rep.get('broken'))}"]]))
