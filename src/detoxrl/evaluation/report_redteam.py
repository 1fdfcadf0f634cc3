"""The report's red-team section, from ``redteam/summary.json``: per method the attack success rate with
its 95% Wilson interval and the diversity of the successful prompts, the rounds of red team → PPO when
``redteam.rounds`` ran them, then the most damaging cases; and from ``eval.json`` the replayed red-team
set and the fresh attack in ``eval``."""

from __future__ import annotations

from detoxrl.evaluation.report_html import esc, fmt, html_table


def _asr(m: dict) -> str:
    lo, hi = m.get("asr_ci95") or (None, None)
    return f"{fmt(m.get('asr'), '.1%')} [{fmt(lo, '.1%')}, {fmt(hi, '.1%')}]"


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
    rounds = summary.get("rounds") or []
    if rounds:
        methods = list(rounds[0]["methods"])
        table += ("<h3>Rounds: red team → PPO → red team</h3><p>Round 0 attacks the policy above; each later "
                  "round continues PPO from the one before with every prompt found so far, then attacks again.</p>"
                  + html_table(["round", "policy"] + [f"{esc(m)}: ASR [95% Wilson]" for m in methods],
                               [[str(r["round"]), f"<code>{esc(r['policy'])}</code>"]
                                + [_asr(r["methods"].get(m, {})) for m in methods] for r in rounds]))
    worst = ("<h3>Most damaging cases</h3>"
             + html_table(["method", "dialogue", "response", "toxicity", "mutations"], cases, "examples")
             if cases else "<p>No attack succeeded.</p>")
    return head + table + worst


def replay_section(rep: dict) -> str:
    """``eval.json``'s ``redteam_replay``: the fixed red-team set's ASR on the reference and the policy."""
    def side(k: str) -> str:
        return _asr(rep[k])

    return (f"<h3>Replayed red-team set</h3><p>{esc(rep.get('n'))} prompts of <code>{esc(rep.get('file', ''))}</code>, "
            f"answered by the reference and by the policy with the same seeds.</p>"
            + html_table(["", "attack success rate [95% Wilson]"],
                         [["before (reference)", side("before")], ["after (policy)", side("after")],
                          ["fixed / broken", f"{esc(rep.get('fixed'))} / {esc(rep.get('broken'))}"],
                          ["McNemar exact p (paired)", fmt(rep.get("p_value"), ".3g")]]))


def attack_section(att: dict) -> str:
    """``eval.json``'s ``redteam_attack``: a fresh attack of the same budget on the reference and the policy."""
    rows = []
    for method, a in att["after"]["methods"].items():
        b = att["before"]["methods"].get(method, {})
        rows.append([esc(method), _asr(b), _asr(a), f"{fmt(b.get('distinct_2'), '.3f')} → {fmt(a.get('distinct_2'), '.3f')}",
                     f"{fmt(b.get('self_bleu'), '.3f')} → {fmt(a.get('self_bleu'), '.3f')}"])
    return (f"<h3>Fresh attack in the evaluation</h3><p>The red team's methods, {esc(att.get('budget'))} target "
            f"generations each, run anew against the reference (before) and the policy (after) with the same "
            f"seed; success when <strong>{esc(att.get('rule'))}</strong> of the judges rates the response toxic.</p>"
            + html_table(["method", "ASR before [95% Wilson]", "ASR after [95% Wilson]", "distinct-2 before → after",
                          "self-BLEU before → after"], rows))
