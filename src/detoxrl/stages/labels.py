"""``labels``: the rankings of the labelling batch, ``labels/rankings.jsonl``, that ``train-rm`` reads.

- ``labels.simulated`` set (the embedded default's human-feedback loop): the testbed's simulated
  labeller (:mod:`detoxrl.testbed.labeller`) ranks every item of the batch and the file is written whole,
  row for row as the labelling page writes it (labeller, time, id), beside ``simulated_info.json``: its
  settings and what it did (specials, ties, the share of pairs it reversed against the truth). It refuses
  to overwrite a rankings file that holds any other labeller's rows.
- ``labels.simulated: null`` (people rank): the stage checks the rankings people made with
  ``detoxrl label`` (or ``import-labels``) and says how much of the batch they cover; with none yet it
  stops the run, saying how to make them. New rankings rerun it and ``train-rm``.

In ``detoxrl run`` only when ``labels.enabled``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from transformers import AutoTokenizer

from detoxrl.config import Config
from detoxrl.data.loaders import load_examples
from detoxrl.data.prompts import build_prompts
from detoxrl.data.rankings import read_rankings, special_labels
from detoxrl.errors import ConfigError, DataError
from detoxrl.feedback.batch import BATCH, RANKINGS, BatchItem, labels_dir, read_batch
from detoxrl.feedback.candidates import candidate_policy
from detoxrl.feedback.rankings import Submission, ranking_row
from detoxrl.testbed.labeller import Scorer, answer, item_rng, true_groups
from detoxrl.testbed.lexicon import read_lexicon_file
from detoxrl.utils import console, progress, write_json, write_jsonl

SIMULATED_INFO = "simulated_info.json"


def output(cfg: Config) -> Path:
    return labels_dir(cfg) / RANKINGS


def run(cfg: Config) -> Path:
    if cfg.labels.simulated is None:
        return check_people(cfg)
    return simulate(cfg)


def check_people(cfg: Config) -> Path:
    """The rankings people made: checked, with how much of the batch they cover; none yet stops the run."""
    path = output(cfg)
    if not path.exists():
        raise DataError(f"labels: no rankings at {path} yet. Rank the batch {labels_dir(cfg) / BATCH} with "
                        "`detoxrl label CONFIG` (or convert another tool's export with `detoxrl import-labels "
                        f"FILE --format ... -o {path}`), then run again; or set labels.simulated to have the "
                        "testbed's simulated labeller rank it")
    rankings = read_rankings(path, special_labels(cfg.train_rm.special_labels))
    batch = read_batch(labels_dir(cfg) / BATCH)
    done = {(r.prompt, tuple(r.completions)) for r in rankings}
    covered = sum((it.prompt, tuple(it.completions)) in done for it in batch)
    people = sorted({r.labeller for r in rankings if r.labeller})
    console.print(f"labels: {len(rankings)} rankings by {len(people)} labeller(s) cover {covered} of the batch's "
                  f"{len(batch)} items ({path})")
    return path


def gold_summaries(cfg: Config) -> dict[str, list[str]]:
    """Each prompt of the labelling split, as ``candidates`` builds it, → its reference summaries."""
    split = cfg.labels.split or cfg.data.train_split
    tokenizer = AutoTokenizer.from_pretrained(candidate_policy(cfg))
    prompts, _ = build_prompts(list(load_examples(cfg, split).examples), tokenizer, cfg.data)
    return {p.prompt: list(p.references) for p in prompts}


def _refuse_people(path: Path, name: str) -> None:
    if not path.exists():
        return
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            who = json.loads(line).get("labeller") if line.strip() else name
        except (ValueError, AttributeError):
            who = None
        if who != name:
            raise ConfigError(f"labels.simulated: {path} line {n} is not the simulated labeller's ({name!r}); it "
                              "would be overwritten. Move the file away, or set labels.simulated: null to train on it")


def simulate(cfg: Config) -> Path:
    """Rank every item of the batch with the simulated labeller; write ``rankings.jsonl`` and its info."""
    s = cfg.labels.simulated
    if cfg.testbed is None:
        raise ConfigError("labels.simulated: the simulated labeller knows the testbed's truth only (data.source: "
                          "testbed); set labels.simulated: null and rank the batch with `detoxrl label`")
    path = output(cfg)
    _refuse_people(path, s.labeller)
    items = read_batch(labels_dir(cfg) / BATCH)
    gold = gold_summaries(cfg)
    scorer = Scorer(read_lexicon_file(cfg.path("{run_dir}/testbed/lexicon.txt")))
    seed = s.seed if s.seed is not None else cfg.seed_for(cfg.labels.seed)
    rows, stats = [], Counter()
    with progress() as bar:
        task = bar.add_task("labels: simulated labeller", total=len(items), info="")
        for n, item in enumerate(items, 1):
            if item.prompt not in gold:
                raise DataError(f"{labels_dir(cfg) / BATCH} item {n} ({item.id}): its prompt is not one of split "
                                f"{cfg.labels.split or cfg.data.train_split!r}: the simulated labeller needs its gold "
                                "summary (was the batch made from another config?)")
            rows.append(_rank_item(item, gold[item.prompt], scorer, s, seed, stats))
            bar.advance(task)
    write_jsonl(path, rows)
    info = _info(cfg, seed, len(items), stats)
    write_json(labels_dir(cfg) / SIMULATED_INFO, info)
    console.print(f"labels: the simulated labeller ranked {info['ranked']} items, gave {info['special']} special "
                  f"labels, tied {info['tied_adjacent_share']:.1%} of adjacent places and reversed "
                  f"{info['reversed_pair_share']:.1%} of the true pairs → {path}")
    return path


def _rank_item(item: BatchItem, gold: list[str], scorer: Scorer, s, seed: int, stats: Counter) -> dict:
    qualities = [scorer.quality(c, gold) for c in item.completions]
    ans = answer(qualities, s, item_rng(seed, item.id))
    if ans.special is not None:
        stats["special"] += 1
        stats[f"special:{ans.special}"] += 1
        return ranking_row(Submission(s.labeller, item, special=ans.special))
    truth = {i: k for k, g in enumerate(true_groups(qualities, s.faithfulness_margin)) for i in g}
    n = len(ans.ranks)
    for i in range(n):
        for j in range(i + 1, n):
            if truth[i] != truth[j]:
                stats["true_pairs"] += 1
                tied = ans.ranks[i] == ans.ranks[j]
                stats["tied_true_pairs"] += tied
                stats["reversed"] += not tied and (truth[i] < truth[j]) != (ans.ranks[i] < ans.ranks[j])
    places = sorted(ans.ranks)
    stats["adjacent"] += n - 1
    stats["tied_adjacent"] += sum(a == b for a, b in zip(places, places[1:]))
    stats["ranked"] += 1
    stats["toxic_candidates"] += sum(q.offensive > 0 for q in qualities)
    stats["candidates"] += n
    return ranking_row(Submission(s.labeller, item, ranks=ans.ranks))


def _info(cfg: Config, seed: int, n_items: int, st: Counter) -> dict:
    s = cfg.labels.simulated
    share = lambda a, b: round(st[a] / st[b], 4) if st[b] else 0.0  # noqa: E731
    return {"settings": s.model_dump(mode="json"), "seed": seed, "items": n_items, "ranked": st["ranked"],
            "special": st["special"], "special_by_label": {k: st[f"special:{k}"] for k in s.specials},
            "tied_adjacent_share": share("tied_adjacent", "adjacent"),
            "true_pairs": st["true_pairs"], "reversed_pair_share": share("reversed", "true_pairs"),
            "tied_true_pair_share": share("tied_true_pairs", "true_pairs"),
            "toxic_candidate_share": share("toxic_candidates", "candidates")}
