"""The labelling page in a real browser (Playwright driving Debian's headless Chromium): rank with a tie,
reload in the middle of an item, a special label, a refused ranking, keyboard shortcuts, a server killed
and restarted; the rows of labels/rankings.jsonl are checked after each, ``train-rm`` trains on the
export with the pair count expected, and a screenshot is saved
(also to ``$DETOXRL_SCREENSHOT`` when set, for a person to look at)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

from detoxrl.feedback.batch import BatchItem, item_id, write_batch
from detoxrl.feedback.server import LabelApp, make_server

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.browser

DIALOGUES = [
    ("#Person1#: The delivery is late again, and the driver was rude to me on the phone.\n"
     "#Person2#: I'm sorry. I'll book a new slot for tomorrow morning and report the call.\n"
     "#Person1#: Thanks. Morning suits me.",
     ["Person1 complains that the delivery is late and the driver was rude; Person2 books a new slot "
      "for tomorrow morning.",
      "Person2 books tomorrow morning for the late delivery.",
      "Person1 says the useless idiot driver was late; Person2 books a new slot.",
      "The delivery is late. Person2 will report the call and deliver tomorrow morning."]),
    ("#Person1#: Do you want to join the chess club on Thursday?\n#Person2#: Sure, what time?\n"
     "#Person1#: Seven, at the library.",
     ["Person1 invites Person2 to the chess club on Thursday at seven at the library.",
      "Person2 joins the chess club.",
      "Chess club, Thursday, seven, library.",
      "Person1 and Person2 play chess."]),
    ("#Person1#: I lost my keys.\n#Person2#: Check the coat you wore yesterday.\n#Person1#: Found them!",
     ["Person1 lost the keys and finds them in yesterday's coat after Person2's hint.",
      "Person1 finds the keys.",
      "Person2 lost the coat."]),
]


def _items() -> list[BatchItem]:
    out = []
    for dialogue, comps in DIALOGUES:
        prompt = f"Summarize the following conversation.\n\n{dialogue}\n\nSummary:"
        out.append(BatchItem(item_id(prompt), prompt, comps, {"testbed-hate": [0.0] * len(comps)}))
    return out


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium not installed at /usr/bin/chromium (Debian package `chromium`)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def serve_in_thread(labels: Path, items: list[BatchItem]):
    """A label server for ``items`` on a free port, in a thread; returns (server, base url)."""
    write_batch(labels / "batch.jsonl", items)
    from detoxrl.feedback.instructions import write_instructions

    write_instructions(labels / "instructions.md", "Less toxic and faithful to the dialogue is better.", 4)
    app = LabelApp.from_files(labels / "batch.jsonl", labels / "rankings.jsonl", labels / "instructions.md")
    server = make_server(app, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def watch(page, base: str) -> list[str]:
    """Collect console errors, page errors and any request that leaves the server."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: None if r.url.startswith(base) else problems.append(f"request to {r.url}"))
    return problems


def rows(labels: Path) -> list[dict]:
    path = labels / "rankings.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def rank_with_keys(page, ranks: list[int]) -> None:
    page.locator("#candidates li.cand").first.focus()
    for r in ranks:
        page.keyboard.press(str(r))  # ranks the focused candidate, focus moves to the next


def wait_progress(page, text: str) -> None:
    """Wait until the progress count reads ``text`` (the page's CSP forbids evaluated JS, so no wait_for_function)."""
    from playwright.sync_api import expect

    expect(page.locator("#progress")).to_have_text(text, timeout=10_000)


def current_ranks(page) -> list[str]:
    return page.locator("#candidates select.rank").evaluate_all("els => els.map(e => e.value)")


def save_screenshot(page, tmp_path: Path) -> Path:
    shot = tmp_path / "label-page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("DETOXRL_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["DETOXRL_SCREENSHOT"])
    return shot


def test_label_three_items_with_a_tie_a_reload_and_a_special_label(browser, tmp_path):
    labels = tmp_path / "labels"
    items = _items()
    server, base = serve_in_thread(labels, items)
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        problems = watch(page, base)
        page.goto(base)
        page.fill("#name", "ana")
        page.press("#name", "Enter")
        page.wait_for_selector("#item:not([hidden])")
        assert page.inner_text("#progress") == "0 / 3 labelled by you"
        assert "item 1 of 3" in page.inner_text("#item-pos") and "The delivery is late" in page.inner_text("#prompt")
        assert "What \"better\" means" in page.inner_text("#instructions-body")

        # item 1: a ranking not in competition form is refused with the server's message, then fixed
        rank_with_keys(page, [1, 2, 2, 3])
        page.keyboard.press("Enter")
        page.wait_for_selector("#message.error")
        assert "did you mean 1, 2, 2, 4?" in page.inner_text("#message") and rows(labels) == []
        page.locator("#candidates select.rank").nth(3).select_option("4")
        page.keyboard.press("Enter")
        wait_progress(page, "1 / 3 labelled by you")
        assert [r["ranks"] for r in rows(labels)] == [[1, 2, 2, 4]]

        # item 2: ranks half entered, then a reload: nothing submitted is lost, the page resumes at item 2
        assert "item 2 of 3" in page.inner_text("#item-pos")
        rank_with_keys(page, [2])
        page.reload()
        page.wait_for_selector("#item:not([hidden])")
        assert "item 2 of 3" in page.inner_text("#item-pos") and page.inner_text("#progress") == "1 / 3 labelled by you"
        assert current_ranks(page) == ["2", "", "", ""]  # the unsent draft is kept in the browser
        assert len(rows(labels)) == 1
        page.keyboard.press("u")  # all unusable
        assert page.get_attribute('button[data-special="all_unusable"]', "aria-pressed") == "true"
        page.keyboard.press("Enter")
        wait_progress(page, "2 / 3 labelled by you")

        # item 3 (three candidates): ranks through the selects, a screenshot, then submit
        assert "item 3 of 3" in page.inner_text("#item-pos")
        for i, r in enumerate([2, 1, 3]):
            page.locator("#candidates select.rank").nth(i).select_option(str(r))
        page.locator("#candidates li.cand").nth(1).focus()
        save_screenshot(page, tmp_path)
        page.click("#submit")
        page.wait_for_selector("#finished:not([hidden])")
        assert page.inner_text("#progress") == "3 / 3 labelled by you"
        refused = [p for p in problems if "status of 400 (Bad Request)" in p]  # the refused ranking, logged
        assert len(refused) == 1 and [p for p in problems if p not in refused] == []
    finally:
        server.shutdown()
        server.server_close()
    got = rows(labels)
    assert [(r["id"], r.get("ranks"), r.get("special")) for r in got] == [
        (items[0].id, [1, 2, 2, 4], None), (items[1].id, None, "all_unusable"), (items[2].id, [2, 1, 3], None)]
    for r, it in zip(got, items):
        assert (r["prompt"], r["completions"], r["labeller"]) == (it.prompt, it.completions, "ana")
        assert r["time"].endswith("+00:00")
    assert (tmp_path / "label-page.png").stat().st_size > 10_000
    # train-rm's pairs from the ranked rows: 1,2,2,4 gives 5 (the tie none), 2,1,3 gives 3
    from detoxrl.rewards.rm_data import rankings_to_pairs

    pairs = rankings_to_pairs([r for r in got if "ranks" in r], "rankings.jsonl")
    comps = items[0].completions
    assert len(pairs) == 8 and (items[0].prompt, comps[0], comps[3]) in pairs
    assert (items[0].prompt, comps[1], comps[2]) not in pairs and (items[0].prompt, comps[2], comps[1]) not in pairs
    # train-rm trains on the page's export as it is: 8 pairs, the special label counted and excluded
    metrics = train_on_export(labels / "rankings.jsonl", tmp_path)
    assert metrics["n_train"] == 8 and metrics["eval"]["n_pairs"] == 8
    summary = metrics["rankings"]["train_file"]
    assert (summary["rows"], summary["ranked"], summary["pairs"], summary["tied_pairs"]) == (3, 2, 8, 1)
    assert summary["special"] == {"all_unusable": 1} and summary["labellers"] == 1


def train_on_export(rankings: Path, tmp_path: Path) -> dict:
    """``train-rm`` (rankings mode, a tiny RoBERTa) on ``rankings``; the same file is its held-out set
    (three items are too few to split), so every pair is counted on both sides."""
    from test_rewards_hf import make_roberta_dir

    from detoxrl.config import config_from_dict
    from detoxrl.rewards.train import train_rm

    words = sorted({w.strip(".,;:!?'#").lower() for it in DIALOGUES for t in [it[0], *it[1]] for w in t.split()})
    base = make_roberta_dir(tmp_path / "rm-init", words=words, hidden=16, layers=1, max_positions=130)
    cfg = config_from_dict({
        "name": "t", "run_dir": str(tmp_path / "run"), "data": {"source": "x.jsonl"}, "policy": {"name_or_path": "p"},
        "reward": {"judges": [{"name": "rm", "type": "reward_model", "path": "{run_dir}/rm"}]},
        "train_rm": {"enabled": True, "mode": "rankings", "base_model": str(base), "train_file": str(rankings),
                     "eval_file": str(rankings), "output_dir": "{run_dir}/rm", "epochs": 1, "batch_size": 4}})
    out = train_rm(cfg)
    assert (out / "detoxrl_rm.json").exists()
    return json.loads((out / "train_metrics.json").read_text())


def test_the_page_survives_a_killed_server(browser, tmp_path):
    """The server dies while item 2 is being ranked: the page says it was not saved and keeps the ranks;
    once a new server runs, Enter saves them, and a reload resumes at item 3."""
    from test_feedback import free_port, labelling_run, start_label_server

    cfg_path, items = labelling_run(tmp_path)
    labels = tmp_path / "run" / "labels"
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    proc = start_label_server(cfg_path, port)
    try:
        page = browser.new_page()
        page.goto(base)
        page.fill("#name", "bo")
        page.press("#name", "Enter")
        page.wait_for_selector("#item:not([hidden])")
        page.keyboard.press("s")  # skip item 1
        page.keyboard.press("Enter")
        wait_progress(page, "1 / 3 labelled by you")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        rank_with_keys(page, [1, 1, 3, 4])
        page.keyboard.press("Enter")
        page.wait_for_selector("#message.error")
        assert "Not saved: the server does not answer" in page.inner_text("#message")
        assert current_ranks(page) == ["1", "1", "3", "4"]
        proc = start_label_server(cfg_path, port)
        page.keyboard.press("Enter")
        wait_progress(page, "2 / 3 labelled by you")
        page.reload()
        page.wait_for_selector("#item:not([hidden])")
        assert "item 3 of 3" in page.inner_text("#item-pos") and page.inner_text("#progress") == "2 / 3 labelled by you"
    finally:
        proc.kill()
        proc.wait(10)
    assert [(r["id"], r.get("ranks"), r.get("special"), r["labeller"]) for r in rows(labels)] == [
        (items[0].id, None, "skip", "bo"), (items[1].id, [1, 1, 3, 4], None, "bo")]
