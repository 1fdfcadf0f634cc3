"""The report's "Reward model" section: what ``train-rm`` made from rankings (``train_metrics.json`` in
``train_rm.output_dir``) and, when the testbed's simulated labeller made those rankings, what it did
(``labels/simulated_info.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from detoxrl.config import Config
from detoxrl.evaluation.report_html import esc, fmt, html_table, not_run


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def reward_model_section(cfg: Config) -> str:
    """Held-out pair accuracy before → after training, the pairs, the rankings and the labeller; ``""`` (no
    section) for a run whose ``train-rm`` trains no reward model on rankings."""
    if not cfg.train_rm.enabled or cfg.train_rm.mode != "rankings":
        return ""
    path = cfg.path(cfg.train_rm.output_dir) / "train_metrics.json"
    m = _read(path)
    if m is None or m.get("mode") != "rankings":
        return not_run("Reward model", f"no reward model trained on rankings in {path.parent}; run `detoxrl train-rm`")
    ev, before = m.get("eval", {}), m.get("eval_before", {})
    rows = [["held-out pair accuracy", fmt(before.get("pair_accuracy"), ".3f"), fmt(ev.get("pair_accuracy"), ".3f")],
            ["held-out pairwise loss", fmt(before.get("loss"), ".4f"), fmt(ev.get("loss"), ".4f")],
            ["held-out mean margin", fmt(before.get("mean_margin"), ".3f"), fmt(ev.get("mean_margin"), ".3f")]]
    table = html_table(["", "before training", "after"], rows)
    info = (m.get("rankings") or {}).get("train_file") or {}
    special = ", ".join(f"{esc(k)} {v}" for k, v in (info.get("special") or {}).items()) or "none"
    text = (f"<p>{m.get('n_train')} training pairs, {m.get('n_eval')} held-out pairs (a share "
            f"{cfg.train_rm.heldout_share:g} of the items, so no held-out pair was trained on); the held-out "
            f"labels are the labellers' own, errors included. Rankings: {info.get('rows')} rows → "
            f"{info.get('pairs')} pairs ({info.get('tied_pairs')} tied pairs make none); special labels "
            f"(excluded): {special}; {info.get('labellers')} labeller(s).</p>")
    return table + text + _simulated(cfg)


def _simulated(cfg: Config) -> str:
    info = _read(cfg.path(cfg.labels.output_dir) / "simulated_info.json") if cfg.labels.simulated else None
    if info is None:
        return ""
    s = info.get("settings", {})
    return (f"<p><strong>Simulated labeller</strong> (the testbed's, not people): noise {fmt(s.get('noise'), 'g')}, "
            f"tie rate {fmt(s.get('tie_rate'), 'g')}, special-label rate {fmt(s.get('special_rate'), 'g')}, "
            f"faithfulness margin {fmt(s.get('faithfulness_margin'), 'g')}. It ranked {info.get('ranked')} items "
            f"and gave {info.get('special')} special labels; against the truth it reversed "
            f"{fmt(100 * info.get('reversed_pair_share', 0), '.1f')}% and tied "
            f"{fmt(100 * info.get('tied_true_pair_share', 0), '.1f')}% of the {info.get('true_pairs')} pairs the "
            f"truth orders; {fmt(100 * info.get('toxic_candidate_share', 0), '.1f')}% of the candidates had an "
            "offensive word.</p>")
