"""Label Studio: its JSON export to rankings rows, and a batch to tasks it imports.

The JSON export (Label Studio's "JSON" export format) is a list of tasks ``{"id", "data": {...},
"annotations": [{"id", "result": [...], "was_cancelled", "completed_by", "created_at", "updated_at"}]}``.
An annotation becomes one rankings row, by its results:

- ``type: ranker`` (the ``Ranker`` tag over a ``List`` of ``data.items``, each ``{"id", "title",
  "body"}``): ``value.ranker`` is the item ids best first, either a list or, in newer versions, ``{<tag
  name>: [ids]}``. Ranker *buckets* (several named groups) sort items into categories, not a ranking,
  and are refused unless one bucket holds every item.
- ``type: pairwise`` (the ``Pairwise`` tag over ``data.answer1`` / ``data.answer2``, or ``text1`` /
  ``text2``): ``value.selected`` is ``left`` (the first is better) or ``right``.
- ``type: choices`` whose choice is a special label (``all_unusable``, ``prompt_unsafe``, ...): the row
  carries that label instead of ranks (it wins over a ranking: the Ranker saves its order on submit
  whether or not the labeller touched it).
- ``was_cancelled: true`` (the labeller skipped the task): special label ``skip``.

``labeller`` is the annotation's ``completed_by`` (its ``email`` when it is an object), ``time`` its
``updated_at`` (else ``created_at``). Tasks without annotations are counted, not converted.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from detoxrl.data.rankings import now_iso, ranking_row
from detoxrl.errors import DataError
from detoxrl.feedback.batch import BatchItem

PAIR_KEYS = (("answer1", "answer2"), ("text1", "text2"))
"""The data keys of the two texts a Pairwise task compares (Label Studio's RLHF and pairwise templates)."""


def _items(data: dict) -> list[dict] | None:
    """The ``List`` items of a task: ``data.items``, else the one list of ``{"id", ...}`` objects in data."""
    candidates = [data["items"]] if isinstance(data.get("items"), list) else [
        v for v in data.values() if isinstance(v, list) and v and all(isinstance(i, dict) and "id" in i for i in v)]
    return candidates[0] if len(candidates) == 1 else None


def _completions(data: dict, kind: str | None, where: str) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of the task's completions: List items for a ranker, the pair for a pairwise."""
    items = _items(data) if kind != "pairwise" else None
    if items is not None:
        ids = [str(i["id"]) for i in items]
        texts = [i.get("body", i.get("text", i.get("title"))) for i in items]
        if not all(isinstance(t, str) for t in texts):
            raise DataError(f"{where}: every List item needs a `body` text")
        return ids, texts
    for left, right in PAIR_KEYS:
        if isinstance(data.get(left), str) and isinstance(data.get(right), str):
            return ["left", "right"], [data[left], data[right]]
    raise DataError(f"{where}: no completions in `data` (a Ranker's `items`, or answer1/answer2 for a Pairwise); "
                    f"data keys: {sorted(data)}")


def _ranker_order(value, ids: list[str], where: str) -> list[str]:
    order = value.get("ranker") if isinstance(value, dict) else None
    if isinstance(order, dict):
        full = [v for v in order.values() if isinstance(v, list) and v]
        if len(full) != 1:
            raise DataError(f"{where}: the Ranker result sorts items into buckets {sorted(order)}; import-labels "
                            "reads a ranking: a Ranker without Buckets (or one bucket holding every item)")
        order = full[0]
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(ids):
        raise DataError(f"{where}: the Ranker result {order!r} is not an order of the task's items {ids}")
    return [str(i) for i in order]


def _ranks(results: list, ids: list[str], where: str) -> list[int] | None:
    """Ranks (1 = best) from the annotation's ranker or pairwise result; None if it has neither."""
    found = [r for r in results if isinstance(r, dict) and r.get("type") in ("ranker", "pairwise")]
    if len(found) > 1:
        raise DataError(f"{where}: {len(found)} Ranker/Pairwise results in one annotation; expected one")
    if not found:
        return None
    res = found[0]
    if res["type"] == "pairwise":
        selected = (res.get("value") or {}).get("selected")
        if selected not in ("left", "right"):
            raise DataError(f"{where}: Pairwise result {selected!r}: expected 'left' or 'right'")
        return [1, 2] if selected == "left" else [2, 1]
    order = _ranker_order(res.get("value"), ids, where)
    return [order.index(i) + 1 for i in ids]


def _special(results: list, specials: Collection[str]) -> str | None:
    for r in results:
        if isinstance(r, dict) and r.get("type") == "choices":
            picked = [c for c in (r.get("value") or {}).get("choices", []) if c in specials]
            if picked:
                return picked[0]
    return None


def _labeller(ann: dict) -> str:
    who = ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return str(who) if who not in (None, "") else "unknown"


def _annotation_row(task: dict, ann: dict, where: str, specials: Collection[str]) -> dict:
    data, results = task["data"], ann.get("result") or []
    if not isinstance(data.get("prompt"), str):
        raise DataError(f"{where}: the task's data has no `prompt` text (data keys: {sorted(data)})")
    kinds = {r.get("type") for r in results if isinstance(r, dict)}
    ids, texts = _completions(data, "pairwise" if "pairwise" in kinds else None, where)
    special = "skip" if ann.get("was_cancelled") else _special(results, specials)
    ranks = None if special else _ranks(results, ids, where)
    if special is None and ranks is None:
        raise DataError(f"{where}: no Ranker, Pairwise or special-label result (result types: {sorted(kinds)})")
    time = ann.get("updated_at") or ann.get("created_at") or now_iso()
    return ranking_row(data["prompt"], texts, _labeller(ann), ranks=ranks, special=special, time=time,
                       specials=specials, where=where)


def from_label_studio(tasks: list, source: str, specials: Collection[str]) -> tuple[list[dict], dict]:
    """Rankings rows from a Label Studio JSON export, and counts (tasks, annotations, unlabelled tasks)."""
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks):
        raise DataError(f"{source}: not a Label Studio JSON export (expected a list of tasks with `data` and "
                        "`annotations`; export the project with the JSON format)")
    rows, unlabelled = [], 0
    for k, task in enumerate(tasks, 1):
        anns = task.get("annotations") or []
        unlabelled += not anns
        for j, ann in enumerate(anns, 1):
            where = f"{source} task {task.get('id', k)} annotation {ann.get('id', j)}"
            rows.append(_annotation_row(task, ann, where, specials))
    return rows, {"tasks": len(tasks), "annotations": len(rows), "unlabelled_tasks": unlabelled}


def to_label_studio(batch: Sequence[BatchItem]) -> list[dict]:
    """Tasks Label Studio imports (a JSON list of ``{"data": ...}``): ``prompt``, ``items`` for a Ranker
    (``{"id": "c1", "title": "Response 1", "body": text}``, ...), ``answer1``/``answer2`` as well when
    there are two completions (a Pairwise), and ``batch_id``. Judges' scores are not shown."""
    tasks = []
    for item in batch:
        comps = item.completions
        data = {"batch_id": item.id, "prompt": item.prompt,
                "items": [{"id": f"c{i}", "title": f"Response {i}", "body": c} for i, c in enumerate(comps, 1)]}
        if len(comps) == 2:
            data["answer1"], data["answer2"] = comps
        tasks.append({"data": data})
    return tasks
