"""The ``report`` stage: one self-contained HTML page, ``report.html`` in the run folder.

The page needs nothing but a browser: plots are PNG images embedded as base64 ``data:`` URIs (drawn
with matplotlib's Agg renderer), the style sheet is inline, there is no script, and a
Content-Security-Policy forbids loading anything from elsewhere. It shows, from whatever the run has
produced (a missing piece is shown as "not run"):

1. the headline: each judge's mean toxicity before → after with the paired interval and verdict;
2. the metrics table with 95% confidence intervals (``eval.json``), overall and per judge, then the
   toxic rate per dimension, severity tier and prompt tier and the over-correction figure
   (:mod:`~detoxrl.evaluation.report_breakdown`);
3. training curves (``ppo/metrics.jsonl``): reward and its components, KL and its coefficient,
   policy entropy / clipping / approximate KL, value loss and explained variance, length and speed;
4. the probe of held-out prompts (``probe/*`` keys) with any reward-hacking warning, and why PPO stopped
   (``detoxrl.json`` beside the policy, ``ppo/warnings.jsonl``);
5. per-principle constitution violations (``constitution/*`` keys) and the curriculum stage over time
   (``curriculum/*`` keys) when they were logged;
6. toxicity distributions before and after, per judge (``eval_table.csv``);
7. the most improved and most worsened examples (by the primary judge's reward difference);
8. the reward model trained on rankings, if the run trains one: held-out pair accuracy, pairs, labellers
   (:mod:`~detoxrl.evaluation.report_rm`);
9. the run's configuration.

This module reads the inputs and assembles the page; the sections are in
:mod:`~detoxrl.evaluation.report_sections`, the figures in :mod:`~detoxrl.evaluation.report_plots` and
the HTML building blocks in :mod:`~detoxrl.evaluation.report_html`.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path

from detoxrl.config import Config
from detoxrl.evaluation.report_breakdown import breakdown_section
from detoxrl.evaluation.report_html import esc, not_run, render_page
from detoxrl.evaluation.report_redteam import attack_section, redteam_section, replay_section
from detoxrl.evaluation.report_rm import reward_model_section
from detoxrl.evaluation.report_sections import (
    constitution_section,
    curriculum_section,
    distributions_section,
    examples_section,
    headline_section,
    metrics_section,
    probe_section,
    training_section,
)
from detoxrl.evaluation.table import read_eval_table
from detoxrl.utils import atomic_write_text, read_jsonl

REPORT_FILE = "report.html"


def read_metrics(path: Path) -> tuple[list[dict], int]:
    """Rows of ``metrics.jsonl`` that parse as JSON objects, and the number of lines skipped.

    A run killed mid-write can leave a torn last line; such lines are skipped, not fatal.
    """
    rows, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad += 1
    return rows, bad


def _safe(fn: Callable[[], str], what: str) -> str:
    """Run a section builder; a broken input file shows as a note instead of failing the report."""
    try:
        return fn()
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return not_run(what, f"could not read its input ({type(exc).__name__}: {exc})")


def provenance_section(prov: dict | None) -> str:
    """What the report describes, by fingerprint, and a warning when the evaluation is stale."""
    if not prov:
        return "<p>No stage fingerprints were recorded for this run.</p>"
    rows = "".join(f"<tr><td>{esc(k)}</td><td><code>{esc(v or 'not recorded')}</code></td></tr>"
                   for k, v in prov.get("fingerprints", {}).items())
    warn = "".join(f'<p class="warn"><strong>Stale:</strong> {esc(w)}</p>' for w in prov.get("warnings", []))
    return (f"{warn}<table><tr><th>stage output</th><th>fingerprint (sha256 of what made it)</th></tr>{rows}"
            "</table><p>Each model folder holds <code>&lt;stage&gt;.fingerprint.json</code>: the settings, "
            "inputs and data files it was made from.</p>")


def training_info(cfg: Config) -> dict:
    """How PPO ended and what it warned about: ``stop`` from ``detoxrl.json`` beside the policy, ``warnings``
    from ``ppo/warnings.jsonl`` (written as they happen, so present after a killed run too)."""
    meta_path = cfg.path(cfg.ppo.output_dir) / "detoxrl.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    warnings_path = cfg.path(cfg.ppo.work_dir) / "warnings.jsonl"
    warnings = read_jsonl(warnings_path) if warnings_path.exists() else meta.get("probe_warnings", [])
    return {"stop": meta.get("stop"), "warnings": warnings}


def _redteam_sections(cfg: Config, ev: dict | None) -> list[tuple[str, str, str]]:
    """The red-team section, when ``redteam/summary.json`` exists (the stage ran) or ``eval.json`` holds a
    replayed red-team set or a fresh attack."""
    path = cfg.path(cfg.redteam.output_dir) / "summary.json"
    rep, att = (ev or {}).get("redteam_replay"), (ev or {}).get("redteam_attack")
    if not path.exists() and not rep and not att:
        return []

    def body() -> str:
        out = redteam_section(json.loads(path.read_text(encoding="utf-8"))) if path.exists() else ""
        return out + (replay_section(rep) if rep else "") + (attack_section(att) if att else "")

    return [("redteam", "Red teaming", _safe(body, "Red teaming"))]


def build_report(cfg: Config, provenance: dict | None = None) -> Path:
    """Write ``report.html`` (self-contained) into the run folder and return its path.

    ``provenance`` (from the report stage): ``fingerprints`` of the outputs described and ``warnings``
    when they do not match (an evaluation of an earlier policy)."""
    run = cfg.run_path
    metrics_path = cfg.path(cfg.ppo.work_dir) / "metrics.jsonl"
    rows: list[dict] | None = None
    bad = 0
    why = f"no {metrics_path.name} in {metrics_path.parent}; run `detoxrl ppo`"
    if metrics_path.exists():
        rows, bad = read_metrics(metrics_path)
        if not rows:
            why = f"{metrics_path} holds no metrics"
    ev = None
    eval_path = run / "eval.json"
    ev_note = ""
    if eval_path.exists():
        try:
            ev = json.loads(eval_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            ev_note = not_run("Evaluation", f"eval.json could not be read ({exc})")
    table = None
    table_path = run / "eval_table.csv"
    if table_path.exists():
        try:
            table = read_eval_table(table_path)
        except (OSError, ValueError, UnicodeDecodeError):
            table = None

    sections = [
        ("summary", "Summary", ev_note or _safe(lambda: headline_section(ev), "Evaluation")),
        ("metrics", "Evaluation metrics", ev_note or _safe(lambda: metrics_section(ev), "Evaluation")),
        ("breakdown", "By type and severity", ev_note or _safe(lambda: breakdown_section(ev), "By type and severity")),
        ("reward-model", "Reward model", _safe(lambda: reward_model_section(cfg), "Reward model")),  # "": none
        ("training", "Training curves", _safe(lambda: training_section(rows, why, bad), "PPO training")),
        ("probes", "Probes and stopping", _safe(lambda: probe_section(rows, training_info(cfg)), "Probes")),
        ("constitution", "Constitution", _safe(lambda: constitution_section(rows), "Constitution")),
        ("curriculum", "Curriculum", _safe(lambda: curriculum_section(rows, cfg.curriculum.enabled), "Curriculum")),
        ("distributions", "Toxicity before and after",
         _safe(lambda: distributions_section(table, ev), "Toxicity distributions")),
        ("examples", "Examples", _safe(lambda: examples_section(table, ev, cfg.report.examples), "Examples")),
        *_redteam_sections(cfg, ev),
        ("provenance", "Provenance", provenance_section(provenance)),
        ("config", "Configuration", "<details><summary>The run's configuration (YAML, as resolved)</summary>"
                                    f"<pre>{esc(cfg.to_yaml())}</pre></details>"),
    ]
    sections = [sec for sec in sections if sec[2]]
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    subtitle = (f"run {cfg.name} · policy {cfg.resolve(cfg.policy.name_or_path)} → "
                f"{cfg.resolve(cfg.ppo.output_dir)} · written {stamp}")
    page = render_page(f"detoxrl report — {cfg.name}", subtitle, sections)
    out = run / REPORT_FILE
    atomic_write_text(out, page)
    return out
