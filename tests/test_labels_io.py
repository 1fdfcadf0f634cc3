"""import-labels and export-labels: Label Studio and Argilla exports to the rankings format, and batches
to the tasks and records those tools import.

The fixtures in ``tests/fixtures/labels/`` follow the tools' own documents (their shapes, not their text):

- ``label_studio_ranker.json``: Label Studio's JSON export of annotated tasks, as its export guide
  (HumanSignal/label-studio ``docs/source/guide/export.md``, "Label Studio JSON format of annotated
  tasks": ``id``, ``data``, ``annotations`` with ``result``, ``was_cancelled``, ``completed_by``,
  ``created_at``/``updated_at``) describes it, with Ranker results as ``docs/source/tags/ranker.md``
  (``value.ranker`` a list of item ids) and the Ranker tag's source ``web/libs/editor/src/tags/control/
  Ranker.jsx`` (``value.ranker`` ``{<tag name>: [ids]}`` in newer versions) give them, over List items
  ``{"id", "title", "body"}`` (``docs/source/templates/generative-llm-ranker.md``); a Choices result
  carries a special label, a cancelled annotation is a skip, ``completed_by`` is a number or an object.
- ``label_studio_pairwise.json``: the same export for the Pairwise tag, task data ``prompt``, ``answer1``,
  ``answer2`` as in ``docs/source/templates/generative-pairwise-human-preference.md`` and results
  ``{"type": "pairwise", "value": {"selected": "left" | "right"}}`` as ``web/libs/editor/src/tags/
  control/Pairwise.js`` creates them.
- ``argilla_records.json``: argilla-io/argilla v2 ``records.to_json`` / ``Dataset.to_disk`` output, a
  JSON list of ``Record.to_dict()`` (``argilla/src/argilla/records/_resource.py``, ``_io/_json.py``):
  ``id``, ``fields``, ``metadata``, ``suggestions``, ``responses`` ``{question: [{"value", "user_id",
  "status"}]}``, ``vectors``, ``_server_id``; a ``rg.RankingQuestion``'s response value is its options
  best first (``responses.py``, ``UserResponse``), statuses ``submitted``/``draft``/``discarded``.
- ``argilla_records_flat.jsonl``: ``records.to_list(flatten=True)`` (``_io/_generic.py``: fields at the
  top level, ``<question>.responses``, ``.responses.users``, ``.responses.status``), one record per line,
  with ranking values in the server's ``[{"value", "rank"}]`` form (argilla-server's
  ``RankingQuestionResponseValueItem``), ties included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detoxrl.cli import app
from detoxrl.data.rankings import SPECIAL_LABELS, parse_time, read_rankings
from detoxrl.errors import DataError
from detoxrl.feedback.argilla import from_argilla, to_argilla
from detoxrl.feedback.batch import BatchItem
from detoxrl.feedback.label_studio import from_label_studio, to_label_studio
from detoxrl.feedback.labels_io import export_labels, import_labels, read_export
from detoxrl.rewards.rm_data import pairs_of

FIXTURES = Path(__file__).parent / "fixtures" / "labels"
runner = CliRunner()


def strip_time(rows):
    assert all(parse_time(r["time"]) for r in rows)
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


# -------------------------------------------------------------------------------- Label Studio
def test_label_studio_ranker_export():
    rows, counts = from_label_studio(read_export(FIXTURES / "label_studio_ranker.json"), "ls.json", SPECIAL_LABELS)
    comps = ["Person2 will send the late report today.", "Person2 says the report is late.",
             "Person1 is an idiot about reports."]
    prompt = rows[0]["prompt"]
    assert prompt.startswith("Summarize the following conversation.") and prompt.endswith("Summary:")
    assert strip_time(rows) == [
        {"prompt": prompt, "completions": comps, "ranks": [1, 2, 3], "labeller": "10"},
        {"prompt": prompt, "completions": comps, "ranks": [2, 1, 3], "labeller": "bob@example.org"},
        {"prompt": prompt, "completions": comps, "special": "all_unusable", "labeller": "12"},
        {"prompt": rows[3]["prompt"], "completions": ["They agree to have lunch at noon.", "They talk."],
         "special": "skip", "labeller": "10"},
    ]
    assert rows[0]["time"] == "2026-03-01T10:16:08.728353Z"  # the annotation's updated_at
    assert counts == {"tasks": 3, "annotations": 4, "unlabelled_tasks": 1}


def test_label_studio_pairwise_export():
    rows, _ = from_label_studio(read_export(FIXTURES / "label_studio_pairwise.json"), "pw.json", SPECIAL_LABELS)
    assert [(r["ranks"], r["labeller"]) for r in rows] == [([1, 2], "10"), ([2, 1], "11")]
    assert rows[0]["completions"] == ["Person2 will fix the printer after lunch.",
                                      "Person2 refuses to help, as usual for that fool."]


def _ls_task(result, data=None, **ann):
    data = data or {"prompt": "p", "items": [{"id": "x", "body": "a"}, {"id": "y", "body": "b"}]}
    return [{"id": 5, "data": data, "annotations": [{"id": 9, "result": result, "completed_by": 1, **ann}]}]


@pytest.mark.parametrize("tasks, message", [
    ({"not": "a list"}, "not a Label Studio JSON export"),
    (_ls_task([{"type": "ranker", "value": {"ranker": {"best": ["x"], "ads": ["y"]}}}]),
     r"task 5 annotation 9: the Ranker result sorts items into buckets \['ads', 'best'\]"),
    (_ls_task([{"type": "ranker", "value": {"ranker": ["x", "z"]}}]), "is not an order of the task's items"),
    (_ls_task([{"type": "pairwise", "value": {"selected": "none"}}], {"prompt": "p", "answer1": "a", "answer2": "b"}),
     "Pairwise result 'none'"),
    (_ls_task([{"type": "textarea", "value": {"text": ["hi"]}}]), "no Ranker, Pairwise or special-label result"),
    (_ls_task([{"type": "ranker", "value": {"ranker": ["x", "y"]}}], {"items": [{"id": "x", "body": "a"}]}),
     "the task's data has no `prompt` text"),
    (_ls_task([{"type": "pairwise", "value": {"selected": "left"}}], {"prompt": "p", "left": "a"}),
     "no completions in `data`"),
    (_ls_task([{"type": "ranker", "value": {"ranker": ["x", "y"]}}], updated_at="last week"),
     "task 5 annotation 9: `time` 'last week' is not an ISO-8601 date-time"),
])
def test_label_studio_errors_name_file_task_and_annotation(tasks, message):
    with pytest.raises(DataError, match=f"ls.json.*{message}"):
        from_label_studio(tasks, "ls.json", SPECIAL_LABELS)


def test_a_ranker_with_one_default_bucket_is_a_ranking():
    tasks = _ls_task([{"type": "ranker", "value": {"ranker": {"all": ["y", "x"], "_": []}}}])
    rows, _ = from_label_studio(tasks, "ls.json", SPECIAL_LABELS)
    assert rows[0]["ranks"] == [2, 1]


# ---------------------------------------------------------------------------------------- Argilla
def test_argilla_nested_records():
    rows, counts = from_argilla(read_export(FIXTURES / "argilla_records.json"), "ar.json", SPECIAL_LABELS)
    comps = ["Person2 says the report is late.", "Person2 will send the late report today.",
             "Person1 is an idiot about reports."]
    assert strip_time(rows) == [
        {"prompt": rows[0]["prompt"], "completions": comps, "ranks": [2, 1, 3],
         "labeller": "3f1b4a52-6c1e-4f0e-9d7a-1a2b3c4d5e6f"},
        {"prompt": rows[0]["prompt"], "completions": comps, "ranks": [1, 2, 3],
         "labeller": "8d2c9e71-0b4f-4a6d-8e3c-6f5e4d3c2b1a"},
        {"prompt": rows[2]["prompt"], "completions": ["They agree to have lunch at noon.", "They talk.",
                                                      "Lunch at noon, says Person2."],
         "special": "skip", "labeller": "3f1b4a52-6c1e-4f0e-9d7a-1a2b3c4d5e6f"},
    ]
    assert counts == {"records": 3, "question": "ranking", "responses": 3, "drafts": 1, "unlabelled_records": 1}


def test_argilla_flat_records_with_ranks_and_ties():
    rows, counts = from_argilla(read_export(FIXTURES / "argilla_records_flat.jsonl"), "ar.jsonl", SPECIAL_LABELS)
    # completion_2 and completion_1 share rank 1, completion_3 is 2nd in the server's dense form → 3rd
    assert [r["ranks"] for r in rows] == [[1, 1, 3], [1, 3, 2]]
    assert rows[0]["completions"][0] == "Person2 says the report is late."  # the record's field order
    assert counts["question"] == "ranking" and counts["responses"] == 2


def test_argilla_errors_name_the_record():
    rec = {"id": "r7", "fields": {"prompt": "p", "a": "x"},
           "responses": {"ranking": [{"value": ["a", "b"], "user_id": "u"}]}}
    with pytest.raises(DataError, match=r"ar.json record r7: options \['b'\] are not text fields"):
        from_argilla([{**rec, "fields": {"prompt": "p", "a": "x", "c": "y"}}], "ar.json", SPECIAL_LABELS, "ranking")
    with pytest.raises(DataError, match="ar.json: no ranking question's responses; name the ranking question"):
        from_argilla([{"id": "r", "fields": {"prompt": "p"}, "responses": {}}], "ar.json", SPECIAL_LABELS)
    two = {"id": "r", "fields": {"prompt": "p", "a": "x", "b": "y"},
           "responses": {"q1": [{"value": ["a", "b"], "user_id": "u"}], "q2": [{"value": ["b", "a"], "user_id": "u"}]}}
    with pytest.raises(DataError, match=r"several ranking questions \['q1', 'q2'\]; name the ranking question"):
        from_argilla([two], "ar.json", SPECIAL_LABELS)
    rows, _ = from_argilla([two], "ar.json", SPECIAL_LABELS, question="q2")
    assert rows[0]["ranks"] == [2, 1]
    no_prompt = {"id": "r9", "fields": {"a": "x", "b": "y"}, "responses": {"q": [{"value": ["a", "b"], "user_id": "u"}]}}
    with pytest.raises(DataError, match="ar.json record r9: the record has no `prompt` field"):
        from_argilla([no_prompt], "ar.json", SPECIAL_LABELS)


# ----------------------------------------------------------------------------- import → train-rm
@pytest.mark.parametrize("name, fmt, n_pairs", [
    ("label_studio_ranker.json", "label-studio", 6), ("label_studio_pairwise.json", "label-studio", 2),
    ("argilla_records.json", "argilla", 6), ("argilla_records_flat.jsonl", "argilla", 5),
])
def test_imports_are_rankings_files_train_rm_reads(tmp_path, name, fmt, n_pairs):
    src = tmp_path / name
    src.write_bytes((FIXTURES / name).read_bytes())
    out, counts = import_labels(src, fmt)
    assert out == tmp_path / f"{Path(name).stem}.rankings.jsonl" and counts["rows"] >= 2
    assert len(pairs_of(read_rankings(out), str(out))) == n_pairs


def test_cli_import_and_export(tmp_path):
    for cmd in ("import-labels", "export-labels"):
        assert runner.invoke(app, [cmd, "--help"]).exit_code == 0
    res = runner.invoke(app, ["import-labels", str(FIXTURES / "label_studio_ranker.json"), "--format", "label-studio",
                              "-o", str(tmp_path / "r.jsonl")])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())  # rich wraps long lines
    assert "4 rankings, all_unusable 1, skip 1 (tasks 3, annotations 4, unlabelled tasks 1) → " in said
    assert len(read_rankings(tmp_path / "r.jsonl")) == 4
    res = runner.invoke(app, ["import-labels", str(FIXTURES / "argilla_records.json"), "--format", "prodigy"])
    assert res.exit_code == 2 and "--format 'prodigy': use one of label-studio, argilla" in " ".join(res.output.split())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_ls_task([{"type": "ranker", "value": {"ranker": ["x"]}}])), encoding="utf-8")
    res = runner.invoke(app, ["import-labels", str(bad), "--format", "label-studio"])
    assert res.exit_code == 2 and "bad.json task 5 annotation 9" in " ".join(res.output.split())
    assert "Traceback" not in res.output
    batch = write_batch(tmp_path / "batch.jsonl", 3)
    res = runner.invoke(app, ["export-labels", str(batch), "--format", "argilla", "-o", str(tmp_path / "ar.json")])
    assert res.exit_code == 0 and "3 items as argilla" in " ".join(res.output.split())
    assert [r["id"] for r in json.loads((tmp_path / "ar.json").read_text())] == ["i0", "i1", "i2"]


# ---------------------------------------------------------------------------------------- exports
def write_batch(path: Path, n: int, k: int = 3) -> Path:
    rows = [{"id": f"i{i}", "prompt": f"prompt {i}", "completions": [f"c{i}.{j}" for j in range(k)],
             "scores": {"testbed-hate": [0.1 * j for j in range(k)]}} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_export_to_label_studio_round_trips(tmp_path):
    batch = write_batch(tmp_path / "batch.jsonl", 2)
    out, n = export_labels(batch, "label-studio", tmp_path / "tasks.json")
    tasks = json.loads(out.read_text())
    assert n == 2 and tasks[0] == {"data": {"batch_id": "i0", "prompt": "prompt 0", "items": [
        {"id": "c1", "title": "Response 1", "body": "c0.0"}, {"id": "c2", "title": "Response 2", "body": "c0.1"},
        {"id": "c3", "title": "Response 3", "body": "c0.2"}]}}
    # what Label Studio would export once someone ranked the tasks
    for k, t in enumerate(tasks):
        t.update(id=k + 1, annotations=[{"id": 1, "completed_by": 3, "updated_at": "2026-03-04T10:00:00Z",
                                         "result": [{"type": "ranker", "value": {"ranker": {"rank": ["c3", "c1", "c2"]}}}]}])
    rows, _ = from_label_studio(tasks, "x", SPECIAL_LABELS)
    assert rows[1]["completions"] == ["c1.0", "c1.1", "c1.2"] and rows[1]["ranks"] == [2, 3, 1]
    assert to_label_studio([BatchItem("a", "p", ["x", "y"])])[0]["data"]["answer2"] == "y"


def test_export_to_argilla_round_trips(tmp_path):
    out, _ = export_labels(write_batch(tmp_path / "batch.jsonl", 2), "argilla", tmp_path / "records.json")
    records = json.loads(out.read_text())
    assert records[0] == {"id": "i0", "prompt": "prompt 0", "completion_1": "c0.0", "completion_2": "c0.1",
                          "completion_3": "c0.2"}
    # logged into a dataset with a ranking question over completion_1..3, answered, exported flat
    flat = [{**r, "ranking.responses": [["completion_2", "completion_3", "completion_1"]],
             "ranking.responses.users": ["u1"], "ranking.responses.status": ["submitted"]} for r in records]
    rows, _ = from_argilla(flat, "x", SPECIAL_LABELS)
    assert rows[0]["completions"] == ["c0.0", "c0.1", "c0.2"] and rows[0]["ranks"] == [3, 1, 2]
    with pytest.raises(DataError, match=r"b.jsonl: items have \[2, 3\] completions"):
        to_argilla([BatchItem("a", "p", ["x", "y"]), BatchItem("b", "p", ["x", "y", "z"])], "b.jsonl")


def test_a_bad_batch_row_is_named(tmp_path):
    path = tmp_path / "batch.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "p", "completions": ["x"]}) + "\n"
                    + json.dumps({"id": "b", "prompt": "p", "completions": "xy"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="batch.jsonl line 2: `completions` must be a non-empty list of strings"):
        export_labels(path, "label-studio", tmp_path / "out.json")
