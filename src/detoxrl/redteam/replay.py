"""Replaying a fixed red-team set: the prompts of a ``cases.jsonl`` found against one policy (the *before*
policy), answered again by the before policy and by the *after* policy, and judged by the same judges
and success rule. The attack success rates are paired (same prompts, same seeds): ``fixed`` counts the
prompts that succeed before but not after, ``broken`` the reverse, and ``p_value`` is the exact McNemar
test of the change: the two-sided binomial test of ``fixed`` against ``broken``
(:func:`detoxrl.evaluation.metrics.sign_test` on the success flags, ties dropped).
"""

from __future__ import annotations

from collections.abc import Sequence

from detoxrl.evaluation.metrics import sign_test
from detoxrl.redteam.cases import fitness_of
from detoxrl.redteam.target import Target, judge_all
from detoxrl.stats import wilson_interval


def successes(target: Target, prompts: list[str], rule: str) -> list[bool]:
    start = target.generations
    responses = target.respond(prompts)
    target.generations = start  # a replay is not an attack: it spends no budget
    return [fitness_of(s, target.thresholds, rule) >= 0 for s in judge_all(target.judges, responses, prompts)]


def replay(before: Target, after: Target, cases: Sequence[dict], rule: str = "any") -> dict:
    """``{"n", "rule", "before", "after", "fixed", "broken", "p_value"}``, each side ``{"successes", "asr",
    "asr_ci95"}``."""
    prompts = list(dict.fromkeys(c["prompt"] for c in cases))
    b = successes(before, prompts, rule)
    a = successes(after, prompts, rule)
    n = len(prompts)

    def side(flags: list[bool]) -> dict:
        k = sum(flags)
        return {"successes": k, "asr": k / n if n else None, "asr_ci95": list(wilson_interval(k, n))}

    return {"n": n, "rule": rule, "before": side(b), "after": side(a),
            "fixed": sum(x and not y for x, y in zip(b, a)), "broken": sum(y and not x for x, y in zip(b, a)),
            "p_value": sign_test([float(x) for x in b], [float(y) for y in a])["p_value"] if n else None}
