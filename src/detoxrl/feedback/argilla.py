"""Argilla (v2): exported ranking-question records to rankings rows, and a batch to records it imports.

Records come as Argilla writes them: ``dataset.records.to_json(path)`` or ``Dataset.to_disk`` (a JSON
list of ``Record.to_dict()``: ``{"id", "fields": {...}, "metadata", "suggestions", "responses":
{question: [{"value", "user_id", "status"?}]}, "vectors", "_server_id"}``), or flattened
(``records.to_list(flatten=True)``, the Hub export): fields at the top level and
``<question>.responses``, ``<question>.responses.users``, ``<question>.responses.status`` as parallel
lists. One JSON list, or one record per line.

The ranking question (``rg.RankingQuestion``) is the one whose responses are rankings, or ``question``.
A response's value ranks the question's options, either as the options best first (``["completion_2",
"completion_1"]``, what the SDK returns) or as ``[{"value": option, "rank": r}, ...]`` (the server's
form; equal ranks are ties, turned into standard competition ranks). The options name the record's
fields that hold the completions (``completion_1``, ... as ``detoxrl export-labels`` writes them); the
completions are listed in the record's field order. The prompt is the field ``prompt``.

``labeller`` is the response's ``user_id``; a response with status ``discarded`` becomes the special
label ``skip``; ``draft`` responses are not final and are left out (counted). Argilla's record export
holds no response times, so ``time`` is the time of the import.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from detoxrl.data.rankings import competition_ranks, now_iso, ranking_row
from detoxrl.errors import DataError
from detoxrl.feedback.batch import BatchItem

OPTION = "completion_{}"
"""The fields (and ranking options) ``export-labels`` writes: ``completion_1``, ``completion_2``, ..."""


def _is_ranking(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("value"), str)) for v in value)


def _names_fields(value: list, fields: dict) -> bool:
    return all((v if isinstance(v, str) else v["value"]) in fields for v in value)


def _responses(rec: dict) -> dict[str, list[dict]]:
    """``{question: [{"value", "user_id", "status"}]}`` of a nested or flattened record."""
    if isinstance(rec.get("responses"), dict):
        return {q: [r for r in rs if isinstance(r, dict)] for q, rs in rec["responses"].items() if isinstance(rs, list)}
    out = {}
    for key, values in rec.items():
        if key.endswith(".responses") and isinstance(values, list):
            users = rec.get(f"{key}.users") or [None] * len(values)
            status = rec.get(f"{key}.status") or [None] * len(values)
            out[key.removesuffix(".responses")] = [{"value": v, "user_id": u, "status": s}
                                                   for v, u, s in zip(values, users, status)]
    return out


def _fields(rec: dict) -> dict:
    if isinstance(rec.get("fields"), dict):
        return rec["fields"]
    return {k: v for k, v in rec.items() if "." not in k and k not in ("id", "_server_id")}


def ranking_question(records: Sequence[dict], source: str, question: str | None) -> str:
    """The question whose responses are rankings of the record's fields: ``question`` itself, or the
    only such one (a multi-label question's lists of labels do not name fields)."""
    found: list[str] = []  # ranking-shaped responses whose options name the record's fields
    shaped: set[str] = set()  # ranking-shaped responses at all
    for rec in records:
        fields = _fields(rec)
        for q, rs in _responses(rec).items():
            ranked = [r["value"] for r in rs if _is_ranking(r.get("value"))]
            shaped.update([q] if ranked else [])
            if q not in found and any(_names_fields(v, fields) for v in ranked):
                found.append(q)
    if question is not None:
        if question not in shaped:
            raise DataError(f"{source}: no ranking responses to question {question!r} (ranking questions: {found})")
        return question
    if len(found) != 1:
        what = "no ranking question's responses" if not found else f"several ranking questions {found}"
        raise DataError(f"{source}: {what}; name the ranking question with --question")
    return found[0]


def _ranks(value, where: str) -> tuple[list[str], list[int]]:
    """``(options, ranks)`` of one response value (module doc)."""
    if all(isinstance(v, str) for v in value):
        return list(value), list(range(1, len(value) + 1))
    options = [v["value"] for v in value]
    given = [v.get("rank") for v in value]
    if all(r is None for r in given):
        return options, list(range(1, len(value) + 1))
    if not all(isinstance(r, int) and not isinstance(r, bool) for r in given):
        raise DataError(f"{where}: ranks {given} are not all whole numbers")
    return options, competition_ranks(given)


def _order(fields: dict, options: Sequence[str], where: str) -> list[str]:
    missing = [o for o in options if not isinstance(fields.get(o), str)]
    if missing:
        raise DataError(f"{where}: options {missing} are not text fields of the record (fields: {sorted(fields)}); "
                        "the ranking question's options must name the fields that hold the completions")
    return [f for f in fields if f in set(options)]


def _record_rows(rec: dict, question: str, where: str, specials: Collection[str], time: str) -> tuple[list[dict], int]:
    fields, responses = _fields(rec), _responses(rec).get(question, [])
    if not isinstance(fields.get("prompt"), str):
        raise DataError(f"{where}: the record has no `prompt` field (fields: {sorted(fields)})")
    ranked = [r for r in responses if _is_ranking(r.get("value"))]
    options = {o for r in ranked for o in _ranks(r["value"], where)[0]} or {
        f for f in fields if f.startswith(OPTION.format(""))}
    order = _order(fields, sorted(options), where)
    rows, drafts = [], 0
    for k, resp in enumerate(responses, 1):
        here, status = f"{where} response {k}", resp.get("status")
        labeller = str(resp.get("user_id") or "unknown")
        if status == "draft":
            drafts += 1
            continue
        if status == "discarded" or not _is_ranking(resp.get("value")):
            rows.append(ranking_row(fields["prompt"], [fields[f] for f in order], labeller, special="skip",
                                    time=time, specials=specials, where=here))
            continue
        opts, ranks = _ranks(resp["value"], here)
        by_option = dict(zip(opts, ranks))
        comps = [f for f in order if f in by_option]
        rows.append(ranking_row(fields["prompt"], [fields[f] for f in comps], labeller,
                                ranks=competition_ranks([by_option[f] for f in comps]), time=time,
                                specials=specials, where=here))
    return rows, drafts


def from_argilla(records: list, source: str, specials: Collection[str],
                 question: str | None = None) -> tuple[list[dict], dict]:
    """Rankings rows from exported Argilla records, and counts (records, responses, drafts, unlabelled)."""
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{source}: not exported Argilla records (expected a JSON list or lines of records)")
    q = ranking_question(records, source, question)
    rows, drafts, unlabelled, time = [], 0, 0, now_iso()
    for k, rec in enumerate(records, 1):
        if not _responses(rec).get(q):
            unlabelled += 1
            continue
        got, d = _record_rows(rec, q, f"{source} record {rec.get('id') or k}", specials, time)
        rows += got
        drafts += d
    return rows, {"records": len(records), "question": q, "responses": len(rows), "drafts": drafts,
                  "unlabelled_records": unlabelled}


def to_argilla(batch: Sequence[BatchItem], source: str) -> list[dict]:
    """Records ``dataset.records.log(...)`` takes: ``{"id", "prompt", "completion_1", ...}``, for a
    dataset with those text fields and ``rg.RankingQuestion("ranking", values=["completion_1", ...])``.
    A ranking question has one fixed set of options, so every item needs as many completions."""
    sizes = sorted({len(item.completions) for item in batch})
    if len(sizes) > 1:
        raise DataError(f"{source}: items have {sizes} completions; an Argilla ranking question has one fixed set "
                        "of options, so export items with the same number of completions together")
    return [{"id": item.id, "prompt": item.prompt,
             **{OPTION.format(i): c for i, c in enumerate(item.completions, 1)}} for item in batch]
