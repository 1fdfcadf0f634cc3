"""Human feedback without a browser: the checks on a submission, the rankings store (durable, resumable,
torn lines repaired), the batch format, the instructions, `detoxrl candidates` on a tiny T5, and the
label server over plain HTTP, killed and restarted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from detoxrl.cli import app
from detoxrl.config import DEFAULT_CRITERION, load_config
from detoxrl.errors import ConfigError, DataError
from detoxrl.feedback import instructions as I
from detoxrl.feedback.batch import BatchItem, item_id, read_batch, write_batch
from detoxrl.feedback.rankings import (
    SPECIAL_LABELS,
    Submission,
    SubmissionError,
    check_ranks,
    check_submission,
    competition_ranks,
    ranking_row,
)
from detoxrl.feedback.store import RankingStore

SRC = Path(__file__).resolve().parents[1] / "src"


def make_items(n: int = 3) -> list[BatchItem]:
    out = []
    for i in range(n):
        prompt = f"Summarize the following conversation.\n\n#Person1#: hello {i}\n#Person2#: hi\n\nSummary:"
        comps = [f"summary {i} {c}" for c in "abcd"[: 4 if i != 2 else 3]]
        out.append(BatchItem(item_id(prompt), prompt, comps, {"j": [0.5] * len(comps)}))
    return out


# ------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("values, ranks", [
    ([0.1, 0.5, 0.5, 0.9], [1, 2, 2, 4]),
    ([1, 1, 2, 3], [1, 1, 3, 4]),
    ([3, 3, 3], [1, 1, 1]),
    ([4, 3, 2, 1], [4, 3, 2, 1]),
])
def test_competition_ranks(values, ranks):
    assert competition_ranks(values) == ranks


@pytest.mark.parametrize("ranks", [[1, 2, 3, 4], [1, 2, 2, 4], [1, 1, 1, 1], [4, 1, 2, 2], [2, 1, 4, 2],
                                   [1.0, 2, 3, 4]])
def test_check_ranks_accepts_competition_form(ranks):
    assert check_ranks(ranks, 4) == [int(r) for r in ranks]


@pytest.mark.parametrize("ranks, words", [
    ([1, 2, 3], "expected 4 ranks, one per candidate, got 3"),
    ([1, 2, 3, 4, 4], "got 5"),
    ([1, None, 2, 3], "candidate 2 has no rank"),
    ([1, "", 2, 3], "candidate 2 has no rank"),
    ([1, 2, 5, 3], "candidate 3: rank 5 is out of range: ranks go from 1 (best) to 4"),
    ([0, 1, 2, 3], "candidate 1: rank 0 is out of range"),
    ([1, 2.5, 3, 4], "candidate 2: rank 2.5 is not a whole number"),
    ([1, "2", 3, 4], "candidate 2: rank '2' is not a whole number"),
    ([1, True, 3, 4], "not a whole number"),
    ([1, 2, 2, 3], "ranks 1, 2, 2, 3 are not in competition form"),
    ([1, 1, 2, 3], "did you mean 1, 1, 3, 4?"),
    ([2, 2, 3, 4], "did you mean 1, 1, 3, 4?"),
    ("1234", "must be a list of 4 ranks"),
])
def test_check_ranks_refuses_with_a_clear_message(ranks, words):
    with pytest.raises(SubmissionError, match=None) as err:
        check_ranks(ranks, 4)
    assert words in str(err.value) and err.value.status == 400


def test_check_submission():
    items = {it.id: it for it in make_items()}
    first = next(iter(items))
    sub = check_submission({"labeller": "  ana   b ", "id": first, "ranks": [1, 2, 2, 4]}, items)
    assert (sub.labeller, sub.item.id, sub.ranks, sub.special) == ("ana b", first, [1, 2, 2, 4], None)
    sub = check_submission({"labeller": "ana", "id": first, "special": "prompt_unsafe", "ranks": None}, items)
    assert sub.special == "prompt_unsafe" and sub.ranks is None
    bad = [
        ({"id": first, "ranks": [1, 2, 3, 4]}, "enter your name"),
        ({"labeller": " ", "id": first, "ranks": [1, 2, 3, 4]}, "enter your name"),
        ({"labeller": "x" * 81, "id": first, "ranks": [1, 2, 3, 4]}, "at most 80"),
        ({"labeller": "ana", "id": "nope", "ranks": [1, 2, 3, 4]}, "no item 'nope' in this batch"),
        ({"labeller": "ana", "id": first}, "rank the candidates or choose a special label"),
        ({"labeller": "ana", "id": first, "ranks": [1, 2, 3, 4], "special": "skip"}, "one of the two"),
        ({"labeller": "ana", "id": first, "special": "boring"},
         "'boring' is not a special label; use one of all_unusable, prompt_unsafe, skip"),
        ({"labeller": "ana", "id": first, "ranks": [1, 2, 3]}, "expected 4 ranks"),
        (["not", "an", "object"], "a JSON object"),
    ]
    for payload, words in bad:
        with pytest.raises(SubmissionError) as err:
            check_submission(payload, items)
        assert words in str(err.value), payload


def test_ranking_row_format():
    item = make_items()[0]
    row = ranking_row(Submission("ana", item, ranks=[1, 2, 2, 4]), time="2026-01-02T03:04:05+00:00")
    assert list(row) == ["prompt", "completions", "ranks", "labeller", "time", "id"]
    assert row == {"prompt": item.prompt, "completions": item.completions, "ranks": [1, 2, 2, 4], "labeller": "ana",
                   "time": "2026-01-02T03:04:05+00:00", "id": item.id}
    row = ranking_row(Submission("ana", item, special="skip"))
    assert list(row) == ["prompt", "completions", "special", "labeller", "time", "id"]
    assert datetime.fromisoformat(row["time"]).utcoffset().total_seconds() == 0


# ------------------------------------------------------------------------------------------ store
def test_store_appends_durably_and_knows_who_did_what(tmp_path):
    items = make_items()
    path = tmp_path / "labels" / "rankings.jsonl"
    store = RankingStore(path)
    assert store.done_ids("ana", items) == []
    store.append(ranking_row(Submission("ana", items[1], ranks=[1, 2, 3, 4])))
    store.append(ranking_row(Submission("bo", items[0], special="skip")))
    with pytest.raises(SubmissionError) as err:
        store.append(ranking_row(Submission("ana", items[1], ranks=[4, 3, 2, 1])))
    assert err.value.status == 409 and "already labelled" in str(err.value)
    assert store.done_ids("ana", items) == [items[1].id] and store.done_ids("bo", items) == [items[0].id]
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["labeller"] for r in rows] == ["ana", "bo"]
    # a new store (a restarted server) sees the same; so does one that another writer appended behind
    again = RankingStore(path)
    assert again.done_ids("ana", items) == [items[1].id]
    store.append(ranking_row(Submission("ana", items[0], ranks=[1, 1, 1, 1])))
    assert again.done_ids("ana", items) == [items[0].id, items[1].id]
    # a batch remade with other candidates for a prompt: that item is to be labelled again
    remade = [BatchItem(items[1].id, items[1].prompt, ["new a", "new b"])]
    assert again.done_ids("ana", remade) == []


def test_store_moves_a_torn_last_line_aside(tmp_path):
    items = make_items()
    path = tmp_path / "rankings.jsonl"
    good = json.dumps(ranking_row(Submission("ana", items[0], ranks=[1, 2, 3, 4])))
    path.write_text(good + "\n" + good[:40])  # the server died in the middle of a write
    store = RankingStore(path)
    assert path.read_text() == good + "\n"
    assert (tmp_path / "rankings.jsonl.torn").read_text() == good[:40] + "\n"
    assert store.done_ids("ana", items) == [items[0].id]
    store.append(ranking_row(Submission("ana", items[1], special="skip")))
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == [items[0].id, items[1].id]
    # a complete last row without its newline (a hand edit) is kept and gets the newline
    path.write_text(good)
    RankingStore(path)
    assert path.read_text() == good + "\n"
    path.write_text(good + "\n{broken\n" + good + "\n")
    with pytest.raises(DataError, match="line 2: not JSON"):
        RankingStore(path)


# ------------------------------------------------------------------------------ batch, instructions
def test_batch_round_trip_and_checks(tmp_path):
    items = make_items()
    path = tmp_path / "batch.jsonl"
    write_batch(path, items)
    back = read_batch(path)
    assert [(b.id, b.prompt, b.completions, b.scores) for b in back] == [(a.id, a.prompt, a.completions, a.scores)
                                                                         for a in items]
    assert item_id("same prompt") == item_id("same prompt") != item_id("other prompt")
    assert len(item_id("x")) == 16
    for text, words in [('{"prompt": "p"}\n', "line 1: `completions` must be a non-empty list"),
                        ('{"prompt": "", "completions": ["a"]}\n', "`prompt` must be a non-empty string"),
                        ('{"id": "a", "prompt": "p", "completions": ["a"]}\n' * 2, "line 2: id 'a' is already used"),
                        ('{"prompt": "p", "completions": ["a"], "scores": {"j": [1, 2]}}\n', "one number per"),
                        ("nope\n", "line 1: not JSON"), ("\n", "the batch is empty")]:
        path.write_text(text)
        with pytest.raises(DataError, match=None) as err:
            read_batch(path)
        assert words in str(err.value)
    with pytest.raises(DataError, match="run `detoxrl candidates` first"):
        read_batch(tmp_path / "missing.jsonl")


def test_instructions_cover_better_ties_and_every_special_label(tmp_path):
    text = I.instructions_text("Less rude is better.", 4)
    assert "Less rude is better." in text and "1, 2, 2, 4" in text and "tie" in text
    assert set(I.SPECIAL_KEYS) == set(SPECIAL_LABELS) == set(I._WHEN)
    for name, key in I.SPECIAL_KEYS.items():
        assert f"`{name}`** (key `{key}`)" in text
    path = tmp_path / "instructions.md"
    assert I.write_instructions(path, DEFAULT_CRITERION, 4)
    path.write_text("# Our own rules\n")
    assert not I.write_instructions(path, DEFAULT_CRITERION, 4)
    assert path.read_text() == "# Our own rules\n"  # an edited file is never overwritten
    assert "<h1>Our own rules</h1>" in I.render_instructions(path.read_text())


# ------------------------------------------------------------------------------------ candidates
def test_candidates_writes_a_batch_with_every_judges_scores(tmp_path, tiny_t5_dir):
    from conftest import write_tiny_run

    from detoxrl.feedback.candidates import run_candidates

    cfg_path = write_tiny_run(tmp_path, tiny_t5_dir, **{
        "labels.n_prompts": 6, "eval.extra_judges": [{"name": "held-out", "type": "profanity"}]})
    cfg = load_config(str(cfg_path))
    out = run_candidates(cfg)
    assert out == tmp_path / "run" / "labels" / "batch.jsonl"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6
    for r in rows:
        assert r["id"] == item_id(r["prompt"])
        assert len(r["completions"]) == 4 and len({" ".join(c.split()) for c in r["completions"]}) == 4
        assert set(r["scores"]) == {"bad-words", "held-out"} == set(r["toxicity"])
        assert all(len(v) == 4 for v in r["scores"].values())
    info = json.loads((out.parent / "batch_info.json").read_text())
    assert info["short"] == [] and info["policy"] == str(tiny_t5_dir) and info["split"] == "train"
    assert [j["name"] for j in info["judges"]] == ["bad-words", "held-out"] and info["judges_missing"] == []
    instructions = out.parent / "instructions.md"
    assert DEFAULT_CRITERION.split()[0] in instructions.read_text()
    instructions.write_text("edited\n")
    assert run_candidates(cfg) == out and out.read_text() == "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                                     for r in rows)  # same seed, same batch
    assert instructions.read_text() == "edited\n"


def test_candidates_records_prompts_short_of_distinct_responses(tmp_path, tiny_t5_dir, monkeypatch):
    from conftest import write_tiny_run

    from detoxrl.errors import ModelError
    from detoxrl.evaluation import judging
    from detoxrl.feedback import candidates as C

    real = judging.build_judge

    def build(settings, cfg, device="cpu"):  # the testbed's case: a judge not trained yet
        if settings.name == "later":
            raise ModelError("model folder run/judge does not exist")
        return real(settings, cfg, device)

    monkeypatch.setattr(judging, "build_judge", build)
    # one new token per response from a 64-word vocabulary: at most ~60 distinct responses per prompt
    cfg = load_config(str(write_tiny_run(tmp_path, tiny_t5_dir, **{
        "labels.n_prompts": 2, "labels.n_candidates": 9, "labels.max_resamples": 1,
        "labels.generation": {"max_new_tokens": 1, "do_sample": True, "top_k": 2},
        "eval.extra_judges": [{"name": "later", "type": "profanity"}]})))
    out = C.run_candidates(cfg)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    info = json.loads((out.parent / "batch_info.json").read_text())
    assert all(1 <= len(r["completions"]) <= 2 for r in rows)  # top_k 2: two distinct tokens at most
    assert info["short"] == [{"id": r["id"], "n_distinct": len(r["completions"])} for r in rows]
    assert [j["name"] for j in info["judges_missing"]] == ["later"] and set(rows[0]["scores"]) == {"bad-words"}


def test_candidates_config_errors(tmp_path, tiny_t5_dir):
    from conftest import write_tiny_run

    from detoxrl.feedback.candidates import candidate_generation, candidate_policy

    with pytest.raises(ConfigError, match="labels.generation: Value error, do_sample must be true"):
        load_config(str(write_tiny_run(tmp_path, tiny_t5_dir, **{"labels.generation": {"do_sample": False}})))
    with pytest.raises(ConfigError, match="labels.n_candidates"):
        load_config(str(write_tiny_run(tmp_path, tiny_t5_dir, **{"labels.n_candidates": 10})))
    cfg = load_config(str(write_tiny_run(tmp_path, tiny_t5_dir, **{"ppo.generation.do_sample": False})))
    with pytest.raises(ConfigError, match="distinct candidates need sampling"):
        candidate_generation(cfg)
    assert candidate_policy(cfg) == str(tiny_t5_dir)
    cfg = load_config(str(write_tiny_run(tmp_path, tiny_t5_dir, **{"sft.enabled": True})))
    assert candidate_policy(cfg) == str(tmp_path / "run" / "sft")
    res = CliRunner().invoke(app, ["candidates", str(write_tiny_run(tmp_path, tiny_t5_dir, **{"sft.enabled": True}))])
    assert res.exit_code == 2 and "run `detoxrl sft` first" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("cmd", ["candidates", "label"])
def test_commands_have_help(cmd):
    res = CliRunner().invoke(app, [cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


# ------------------------------------------------------------------- the server over plain HTTP
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start_label_server(cfg_path: Path, port: int) -> subprocess.Popen:
    """``detoxrl label CONFIG --port PORT`` in its own process, once it answers."""
    env = {**os.environ, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "detoxrl", "label", str(cfg_path), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the label server ended: {proc.stdout.read()}")
        try:
            if http(f"http://127.0.0.1:{port}/api/batch")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the label server did not answer within 60 s")


def labelling_run(tmp_path: Path, n: int = 3) -> tuple[Path, list[BatchItem]]:
    """A config whose labels folder holds a hand-made batch of ``n`` items (no model needed)."""
    from conftest import write_tiny_run

    cfg_path = write_tiny_run(tmp_path, tmp_path / "no-policy-needed")
    items = make_items(n)
    write_batch(tmp_path / "run" / "labels" / "batch.jsonl", items)
    return cfg_path, items


def test_a_killed_server_loses_nothing_and_the_labeller_resumes(tmp_path):
    cfg_path, items = labelling_run(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_label_server(cfg_path, port)
    try:
        assert http(f"{base}/api/progress?labeller=ana")[1] == {"done": [], "total": 3, "next": items[0].id}
        status, res = http(f"{base}/api/submit", {"labeller": "ana", "id": items[0].id, "ranks": [1, 2, 2, 4]})
        assert status == 200 and res["done"] == [items[0].id] and res["next"] == items[1].id
        status, res = http(f"{base}/api/submit", {"labeller": "ana", "id": items[1].id, "ranks": [1, 2, 2, 3]})
        assert status == 400 and "did you mean 1, 2, 2, 4?" in res["error"]
        assert http(f"{base}/api/submit", {"labeller": "ana", "id": items[0].id}, {"Origin": "http://evil.example"}
                    )[0] == 403
        proc.send_signal(signal.SIGKILL)  # no clean shutdown
        proc.wait(10)
        proc = start_label_server(cfg_path, port)
        assert http(f"{base}/api/progress?labeller=ana")[1] == {"done": [items[0].id], "total": 3,
                                                                 "next": items[1].id}
        status, res = http(f"{base}/api/submit", {"labeller": "ana", "id": items[0].id, "special": "skip"})
        assert status == 409 and "already labelled" in res["error"]
        assert http(f"{base}/api/submit", {"labeller": "ana", "id": items[1].id, "special": "skip"})[0] == 200
        assert http(f"{base}/api/progress?labeller=bo")[1]["next"] == items[0].id  # each labeller has their own
    finally:
        proc.kill()
        proc.wait(10)
    rows = [json.loads(line) for line in (tmp_path / "run" / "labels" / "rankings.jsonl").read_text().splitlines()]
    assert [(r["id"], r.get("ranks"), r.get("special")) for r in rows] == [(items[0].id, [1, 2, 2, 4], None),
                                                                         (items[1].id, None, "skip")]
    assert (tmp_path / "run" / "labels" / "instructions.md").exists()  # written from the config when absent


def test_the_page_is_self_contained_and_only_this_server_is_served(tmp_path):
    from detoxrl.feedback.server import LabelApp, build_page, make_server

    page, csp = build_page()
    text = page.decode()
    assert "%%" not in text and "<script>" in text and "<style>" in text
    assert "http://" not in text and "https://" not in text  # nothing from anywhere else
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "unsafe" not in csp
    _, items = labelling_run(tmp_path)
    labels = tmp_path / "run" / "labels"
    server = make_server(LabelApp.from_files(labels / "batch.jsonl", labels / "rankings.jsonl", labels / "none.md"), 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/", timeout=10) as res:
            assert res.headers["Content-Security-Policy"] == csp and res.read() == page
        status, batch = http(base + "/api/batch")
        assert status == 200 and [b["id"] for b in batch["items"]] == [it.id for it in items]
        assert "scores" not in batch["items"][0]  # the judges' opinions would bias the people who rank
        assert [s["name"] for s in batch["specials"]] == list(SPECIAL_LABELS)
        assert http(base + "/api/batch", headers={"Host": "attacker.example"})[0] == 403  # DNS rebinding
        assert http(base + "/api/progress")[0] == 400 and http(base + "/nope")[0] == 404
        req = urllib.request.Request(base + "/api/submit", data=b"{not json", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 400 and "not JSON" in json.loads(err.value.read())["error"]
    finally:
        server.shutdown()
        server.server_close()
