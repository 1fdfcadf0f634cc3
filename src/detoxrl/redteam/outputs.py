"""What a red-team run writes into its folder (``redteam.output_dir``):

- ``cases.jsonl``: every successful attempt, one JSON object a line — ``method``, ``text`` (the
  dialogue), ``prompt`` (what the target read), ``response``, ``scores`` (every judge's ``toxicity``,
  ``score`` and ``dimensions``), ``success``, ``fitness``, ``generation`` (search or few-shot round),
  ``attempt`` (its number among the method's target generations), ``mutations``, ``source``;
- ``summary.json``: the judges (names, thresholds), the success rule, the attacked policy, and per
  method the attempts, successes, attack success rate with its 95% Wilson interval, per-judge rates,
  distinct-2 and self-BLEU of the successful dialogues, the dimension mix, and the seconds spent.

``summary.json`` is written last, so its presence means the run is complete.
"""

from __future__ import annotations

from pathlib import Path

from detoxrl.evaluation.summary import json_clean
from detoxrl.redteam.cases import Attempt, method_summary, most_damaging
from detoxrl.utils import write_json, write_jsonl

CASES = "cases.jsonl"
SUMMARY = "summary.json"


def write_outputs(folder: Path, attempts: dict[str, list[Attempt]], thresholds: dict[str, float],
                  meta: dict, seconds: dict[str, float], top: int = 5) -> dict:
    """Write ``cases.jsonl`` then ``summary.json``; returns the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / CASES, [json_clean(a.to_row()) for rows in attempts.values() for a in rows if a.success])
    methods = {}
    for method, rows in attempts.items():
        s = method_summary(rows, thresholds)
        s["seconds"] = round(seconds.get(method, 0.0), 2)
        s["seconds_per_1000_generations"] = round(1000 * s["seconds"] / len(rows), 2) if rows else None
        methods[method] = s
    everything = [a for rows in attempts.values() for a in rows]
    summary = {**meta, "judges": [{"name": n, "threshold": t} for n, t in thresholds.items()],
               "methods": methods,
               "most_damaging": [a.to_row() for a in most_damaging(everything, top)]}
    summary = json_clean(summary)
    write_json(folder / SUMMARY, summary)
    return summary
