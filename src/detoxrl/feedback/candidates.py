"""``detoxrl candidates``: a labelling batch of N distinct sampled responses per prompt.

prompts (a seeded draw of ``labels.n_prompts`` from ``labels.split``, each prompt once) → ``labels.policy``
samples ``labels.n_candidates`` responses per prompt (:func:`~detoxrl.evaluation.generation.generate_all`,
seeded) → duplicates (whitespace collapsed) are dropped and the prompts left short are sampled again, up to
``labels.max_resamples`` more rounds → every configured judge (the reward's and ``eval.extra_judges``,
:mod:`detoxrl.evaluation.judging`) scores every candidate → ``labels/batch.jsonl``
(:mod:`~detoxrl.feedback.batch`), ``labels/batch_info.json`` (what made it; the prompts left short) and
``labels/instructions.md`` when it is absent (:mod:`~detoxrl.feedback.instructions`).

A judge that cannot be built yet (the testbed's judge before ``train-rm`` has made it) is left out of the
scores with a warning and listed in ``batch_info.json``: scores inform, they are not needed to rank.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from detoxrl.config import Config, GenerationSettings
from detoxrl.data.loaders import load_examples
from detoxrl.data.prompts import build_prompts
from detoxrl.errors import ConfigError, DataError, ModelError
from detoxrl.evaluation import judging
from detoxrl.evaluation.generation import generate_all
from detoxrl.feedback.batch import (
    BATCH,
    BATCH_INFO,
    INSTRUCTIONS,
    RANKINGS,
    BatchItem,
    item_id,
    labels_dir,
    write_batch,
)
from detoxrl.feedback.instructions import write_instructions
from detoxrl.models.loading import LoadedPolicy, load_policy_model
from detoxrl.utils import console, progress, set_seed, write_json


def candidate_policy(cfg: Config) -> str:
    """``labels.policy``, else the run's SFT policy (``sft.output_dir``) if SFT is on, else ``policy``."""
    if cfg.labels.policy:
        return cfg.resolve(cfg.labels.policy)
    if cfg.sft.enabled:
        return str(cfg.path(cfg.sft.output_dir))
    return cfg.resolve(cfg.policy.name_or_path)


def candidate_generation(cfg: Config) -> GenerationSettings:
    gen = cfg.labels.generation or cfg.ppo.generation
    if not gen.do_sample:
        raise ConfigError("labels.generation is null and ppo.generation.do_sample is false: distinct candidates "
                          "need sampling; set labels.generation.do_sample (or ppo.generation.do_sample) to true")
    return gen


def sample_prompts(cfg: Config, tokenizer, split: str, n: int, seed: int) -> list:
    """``n`` distinct prompts of ``split`` that pass the prompt filters, in a seeded random order."""
    examples = list(load_examples(cfg, split).examples)
    random.Random(seed).shuffle(examples)
    kept, seen, start, block = [], set(), 0, max(n, 256)
    while len(kept) < n and start < len(examples):
        part, _ = build_prompts(examples[start : start + block], tokenizer, cfg.data)
        for p in part:
            if p.prompt not in seen and len(kept) < n:
                seen.add(p.prompt)
                kept.append(p)
        start += block
    if not kept:
        raise DataError(f"no prompts for labelling in split {split!r} of {cfg.data.source}: none passes "
                        "data.min_prompt_tokens/max_prompt_tokens")
    if len(kept) < n:
        console.print(f"candidates: split {split!r} has {len(kept)} usable distinct prompts, fewer than "
                      f"labels.n_prompts = {n}")
    return kept


def _norm(text: str) -> str:
    return " ".join(text.split())


def distinct_candidates(lp: LoadedPolicy, prompts: list[str], gen: GenerationSettings, n: int, *,
                        max_resamples: int, batch_size: int, max_prompt_tokens: int, seed: int,
                        bar=None) -> list[list[str]]:
    """Up to ``n`` distinct responses per prompt: ``n`` samples each, then, for the prompts with fewer
    distinct ones, as many more as they lack, for up to ``max_resamples`` rounds (a new seed each)."""
    found: list[list[str]] = [[] for _ in prompts]
    keys: list[set[str]] = [set() for _ in prompts]
    need = list(range(len(prompts)))
    total = len(prompts) * n
    task = bar.add_task("candidates: generate", total=total, info="") if bar else None
    for round_ in range(1 + max_resamples):
        if not need:
            break
        k = max(n - len(found[i]) for i in need)
        if bar and round_:
            total += len(need) * k
            bar.update(task, total=total, info=f"resample {round_}: {len(need)} prompts")
        g = generate_all(lp, [prompts[i] for i in need], gen, samples=k, batch_size=batch_size,
                         max_prompt_tokens=max_prompt_tokens, seed=seed + 7_919 * round_,
                         on_batch=(lambda m: bar.advance(task, m)) if bar else None)
        for j in range(k):
            for pos, i in enumerate(need):
                text = g.texts[j][pos]
                if len(found[i]) < n and _norm(text) not in keys[i]:
                    keys[i].add(_norm(text))
                    found[i].append(text)
        need = [i for i in need if len(found[i]) < n]
    return found


def _build_judges(cfg: Config, device: str) -> tuple[list[judging.EvalJudge], list[dict]]:
    """Every configured judge that can be built now, and ``{"name", "error"}`` for those that cannot."""
    settings = [(s, True) for s in cfg.reward.judges] + [(s, False) for s in cfg.eval.extra_judges]
    names = [s.name for s, _ in settings]
    dupes = sorted({x for x in names if names.count(x) > 1})
    if dupes:
        raise ConfigError(f"judge names must be unique across reward.judges and eval.extra_judges; repeated: {dupes}")
    built, missing = [], []
    for s, trained in settings:
        try:
            built.append(judging.EvalJudge(judging.build_judge(s, cfg, device), s, trained))
        except ModelError as exc:
            console.print(f"[yellow]warning:[/] candidates: judge {s.name!r} left out of the scores: {exc}",
                          highlight=False)
            missing.append({"name": s.name, "error": str(exc)})
    return built, missing


def score_candidates(judges: list[judging.EvalJudge], prompts: list[str], found: list[list[str]], bar=None
                     ) -> tuple[list[dict[str, list[float]]], list[dict[str, list[float]]]]:
    """Per prompt, ``{judge: [score per candidate]}`` and ``{judge: [toxicity per candidate]}``."""
    flat = [t for row in found for t in row]
    flat_prompts = [p for p, row in zip(prompts, found) for _ in row]
    scores: list[dict[str, list[float]]] = [{} for _ in found]
    toxicity: list[dict[str, list[float]]] = [{} for _ in found]
    task = bar.add_task("candidates: judges", total=len(flat) * len(judges), info="") if bar else None
    for ej in judges:
        if bar:
            bar.update(task, info=ej.name)
        res = judging.score_texts(ej, flat, flat_prompts, on_chunk=(lambda m: bar.advance(task, m)) if bar else None)
        start = 0
        for i, row in enumerate(found):
            sl = slice(start, start + len(row))
            scores[i][ej.name] = [round(float(v), 6) for v in res["score"][sl]]
            toxicity[i][ej.name] = [round(float(v), 6) for v in res["toxicity"][sl]]
            start += len(row)
    return scores, toxicity


def run_candidates(cfg: Config, *, device: str | None = None) -> Path:
    """Write ``labels/batch.jsonl`` (and ``batch_info.json``, and ``instructions.md`` if absent)."""
    s = cfg.labels
    seed = cfg.seed_for(s.seed)
    set_seed(seed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gen = candidate_generation(cfg)
    split = s.split or cfg.data.train_split
    policy_path = candidate_policy(cfg)
    in_run = policy_path.startswith(str(cfg.run_path)) and not Path(policy_path).exists()
    hint = " (run `detoxrl sft` first, or set labels.policy)" if in_run else ""
    try:
        lp = load_policy_model(cfg.policy.model_copy(update={"name_or_path": policy_path}), device=device)
    except ModelError as exc:
        raise ModelError(f"{exc}{hint}") from None
    lp.model.eval()
    prompts = sample_prompts(cfg, lp.tokenizer, split, s.n_prompts, seed)
    texts = [p.prompt for p in prompts]
    with progress() as bar:
        found = distinct_candidates(lp, texts, gen, s.n_candidates, max_resamples=s.max_resamples,
                                    batch_size=s.batch_size, max_prompt_tokens=cfg.data.max_prompt_tokens,
                                    seed=seed, bar=bar)
        del lp
        judges, missing = _build_judges(cfg, device)
        scores, toxicity = score_candidates(judges, texts, found, bar)
    items = [BatchItem(item_id(t), t, comps, sc, tx) for t, comps, sc, tx in zip(texts, found, scores, toxicity)]
    return _write(cfg, items, policy_path, split, gen, seed, judges, missing)


def _write(cfg: Config, items: list[BatchItem], policy_path: str, split: str, gen: GenerationSettings,
           seed: int, judges: list[judging.EvalJudge], missing: list[dict]) -> Path:
    s, out = cfg.labels, labels_dir(cfg)
    short = [{"id": it.id, "n_distinct": len(it.completions)} for it in items if len(it.completions) < s.n_candidates]
    write_batch(out / BATCH, items)
    write_json(out / BATCH_INFO, {
        "n_prompts": len(items), "n_candidates": s.n_candidates, "policy": policy_path, "split": split,
        "seed": seed, "generation": gen.model_dump(mode="json"), "max_resamples": s.max_resamples,
        "short": short, "judges": [judging.judge_info(ej, cfg) for ej in judges], "judges_missing": missing})
    wrote = write_instructions(out / INSTRUCTIONS, s.criterion, s.n_candidates)
    if short:
        console.print(f"candidates: {len(short)} of {len(items)} prompts have fewer than {s.n_candidates} distinct "
                      f"candidates after {s.max_resamples} resampling rounds (listed in {out / BATCH_INFO})")
    if (out / RANKINGS).exists():
        console.print(f"candidates: {out / RANKINGS} is kept; items whose candidates changed are to be labelled again")
    console.print(f"candidates: {len(items)} prompts × up to {s.n_candidates} candidates → {out / BATCH}"
                  + ("" if wrote else f"; {out / INSTRUCTIONS} exists and was kept"))
    return out / BATCH
