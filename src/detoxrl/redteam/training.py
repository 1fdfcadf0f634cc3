"""From red-team cases to training data ("then remove all harmful responses").

- :func:`harmful_examples`: the distinct successful dialogues of a ``cases.jsonl`` as prompt examples for
  PPO (``ppo.redteam_prompts``); they carry ``meta["tier"] = "harmful"`` and ``meta["redteam"] = True`` and,
  with the curriculum on, the highest difficulty, so the pacing brings them in last (the curriculum's harmful
  tier; under ``curriculum.difficulty: tier`` harmful whatever the data's tier column, graded mild or severe
  by their judge severity).
- :func:`clean_responses`: for each harmful case, the target re-sampled on the same prompt (up to
  ``resamples`` times) until the judges call a response non-toxic by the same success rule; cases with
  no clean response within the tries make no pair.
- :func:`preference_rows` / :func:`sft_rows`: each (harmful, clean) pair as a rankings row that
  ``train-rm`` reads (``{"prompt", "completions": [clean, harmful], "ranks": [1, 2], "labeller", "time"}``,
  see :mod:`detoxrl.data.rankings`) and as an ``sft`` row (dialogue → clean response).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detoxrl.curriculum.tiers import REDTEAM_MARK
from detoxrl.data.files import read_utf8
from detoxrl.data.loaders import Example
from detoxrl.data.rankings import ranking_row
from detoxrl.errors import DataError
from detoxrl.redteam.cases import fitness_of
from detoxrl.redteam.target import Target, judge_all

LABELLER = "redteam-resample"
HARMFUL_TIER = "harmful"


def read_cases(path: str | Path) -> list[dict]:
    """The rows of a ``cases.jsonl``; a row that is not an object with ``text``, ``prompt`` and ``response``
    strings is refused, naming the file and line."""
    path = Path(path)
    rows = []
    for i, line in enumerate(read_utf8(path, "red-team cases file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {i}: not JSON ({exc.msg})") from None
        bad = [k for k in ("text", "prompt", "response") if not isinstance(row, dict) or not isinstance(row.get(k), str)]
        if bad:
            raise DataError(f"{path}, line {i}: a red-team case needs string fields text, prompt, response; "
                            f"missing or not a string: {', '.join(bad)}")
        rows.append(row)
    return rows


def harmful_examples(cases: Sequence[dict]) -> list[Example]:
    """The distinct successful dialogues, in order, as examples (id ``redteam-<n>``, tier ``harmful``)."""
    texts = list(dict.fromkeys(c["text"] for c in cases if c.get("success", True) and c["text"].strip()))
    return [Example(f"redteam-{i}", t, [], {"tier": HARMFUL_TIER, REDTEAM_MARK: True}) for i, t in enumerate(texts)]


@dataclass
class Pair:
    text: str
    prompt: str
    harmful: str
    clean: str


def clean_responses(target: Target, cases: Sequence[dict], resamples: int, rule: str = "any") -> list[Pair]:
    """A non-toxic response to each case's prompt, re-sampled from the target up to ``resamples`` times."""
    todo = {i: c for i, c in enumerate(cases)}
    found: dict[int, str] = {}
    for _ in range(resamples):
        if not todo:
            break
        idx = list(todo)
        prompts = [todo[i]["prompt"] for i in idx]
        responses = target.respond(prompts)
        for i, resp, sc in zip(idx, responses, judge_all(target.judges, responses, prompts)):
            if fitness_of(sc, target.thresholds, rule) < 0 and resp.strip():
                found[i] = resp
                del todo[i]
    return [Pair(cases[i]["text"], cases[i]["prompt"], cases[i]["response"], found[i]) for i in sorted(found)]


def preference_rows(pairs: Sequence[Pair], time: str | None = None) -> list[dict]:
    """Rankings rows (current format, checked as ``train-rm`` checks them): the clean response ranked 1."""
    return [ranking_row(p.prompt, [p.clean, p.harmful], LABELLER, ranks=[1, 2], time=time,
                        where=f"red-team pair {i}") for i, p in enumerate(pairs)]


def sft_rows(pairs: Sequence[Pair], text_column: str, target_column: str) -> list[dict]:
    return [{"id": f"redteam-{i}", text_column: p.text, target_column: p.clean} for i, p in enumerate(pairs)]
