"""``redteam``: attack a policy with the configured methods → ``redteam/cases.jsonl``, ``redteam/summary.json``.

The target is ``redteam.policy`` (default ``ppo.output_dir``, so in ``detoxrl run`` it attacks the policy
PPO has just trained; ``detoxrl redteam --policy DIR`` attacks any folder). It answers with
``eval.generation``'s decoding; the judges are the configured ones (``reward.judges`` and
``eval.extra_judges``, or the names in ``redteam.judges``), each at its own threshold. Every method has
``redteam.budget`` target generations. :func:`attack` (every method on one target) is what ``eval``'s fresh
attack (``eval.redteam_attack``) runs too; with ``redteam.rounds`` the stage goes on to red team → PPO → red
team (:mod:`detoxrl.stages.redteam_rounds`).
"""

from __future__ import annotations

import time
from pathlib import Path

from detoxrl.config import Config
from detoxrl.data.loaders import load_examples
from detoxrl.errors import ModelError
from detoxrl.evaluation.evaluate import load_eval_prompts
from detoxrl.evaluation.judging import EvalJudge, build_eval_judges
from detoxrl.models.loading import load_policy_model
from detoxrl.redteam.cases import Attempt
from detoxrl.redteam.outputs import SUMMARY, write_outputs
from detoxrl.redteam.pool import hostile_utterances
from detoxrl.redteam.search import SearchSettings, Seed, perturbation_search
from detoxrl.redteam.target import Target
from detoxrl.redteam.training import clean_responses, preference_rows, sft_rows
from detoxrl.stages.device import stage_device
from detoxrl.stages.redteam_lm import red_lm_dir, run_red_lm, run_rl
from detoxrl.stages.redteam_rounds import run_rounds
from detoxrl.utils import console, progress, set_seed, write_jsonl

PREFERENCES = "preferences.jsonl"
SFT_PAIRS = "sft.jsonl"


def output(cfg: Config) -> Path:
    return cfg.path(cfg.redteam.output_dir) / SUMMARY


def target_dir(cfg: Config) -> Path:
    return cfg.path(cfg.redteam.policy or cfg.ppo.output_dir)


def chosen_judges(cfg: Config, device: str) -> list[EvalJudge]:
    names = cfg.redteam.judges
    return [ej for ej in build_eval_judges(cfg, device=device) if names is None or ej.name in names]


def _hostile_pool(cfg: Config, target: Target) -> list[str]:
    rt = cfg.redteam
    if "insert" not in rt.mutations or rt.hostile_scan == 0:
        return []
    texts = [e.text for e in load_examples(cfg, cfg.data.train_split).examples]
    pool = hostile_utterances(texts, target.judges, target.thresholds, rt.success, rt.hostile_scan)
    console.print(f"redteam: {len(pool)} hostile utterances among the first {rt.hostile_scan} distinct turns "
                  f"of split {cfg.data.train_split!r}" + ("" if pool else "; the insert mutation has none to insert"))
    return pool


def _perturbation(cfg: Config, target: Target, seed: int) -> list[Attempt]:
    rt = cfg.redteam
    prompts, _ = load_eval_prompts(cfg, target.policy.tokenizer, n=rt.seed_prompts)
    seeds = [Seed(p.id, p.text) for p in prompts]
    settings = SearchSettings(budget=rt.budget, population=rt.population, batch=rt.batch,
                              max_mutations=rt.max_mutations, explore=rt.explore, mutations=tuple(rt.mutations),
                              success=rt.success, seed=seed)
    return perturbation_search(target, seeds, _hostile_pool(cfg, target), settings)


def _method(cfg: Config, target: Target, seed: int, method: str, found: list[Attempt]) -> list[Attempt]:
    if method == "perturbation":
        return _perturbation(cfg, target, seed)
    if method == "rl":
        return run_rl(cfg, target, seed)
    return run_red_lm(cfg, target, seed, method, [(a.text, a.fitness) for a in found if a.success and a.text])


def _write_pairs(cfg: Config, target: Target, wins: list[Attempt], folder: Path) -> dict:
    """``preferences.jsonl`` and ``sft.jsonl`` from each distinct harmful case and a clean re-sample."""
    cases = list({a.prompt: {"text": a.text, "prompt": a.prompt, "response": a.response} for a in wins}.values())
    target.on_batch = None
    pairs = clean_responses(target, cases, cfg.redteam.resamples, cfg.redteam.success)
    write_jsonl(folder / PREFERENCES, preference_rows(pairs))
    write_jsonl(folder / SFT_PAIRS, sft_rows(pairs, cfg.data.text_column, cfg.sft.target_column))
    console.print(f"redteam: {len(pairs)} of {len(cases)} harmful cases got a clean re-sample → "
                  f"{folder / PREFERENCES}, {folder / SFT_PAIRS}")
    return {"cases": len(cases), "pairs": len(pairs), "resamples": cfg.redteam.resamples}


def build_target(cfg: Config, policy_dir: Path | str, judges: list[EvalJudge], device: str, seed: int,
                 batch_size: int | None = None) -> Target:
    """The policy in ``policy_dir`` answering with ``eval.generation``, scored by ``judges``."""
    lp = load_policy_model(cfg.policy.model_copy(update={"name_or_path": str(policy_dir)}), device=device)
    lp.model.eval()
    return Target(lp, [ej.judge for ej in judges], cfg.eval.generation, cfg.data.prompt_template,
                  cfg.data.max_prompt_tokens, batch_size=batch_size or cfg.redteam.batch, seed=seed,
                  thresholds={ej.name: ej.threshold for ej in judges})


def attack(cfg: Config, target: Target, seed: int, label: str = "redteam"
           ) -> tuple[dict[str, list[Attempt]], dict[str, float]]:
    """Every method of ``redteam.methods`` in turn, ``redteam.budget`` target generations each: the
    attempts and the seconds per method."""
    rt = cfg.redteam
    attempts: dict[str, list[Attempt]] = {}
    seconds: dict[str, float] = {}
    if set(rt.methods) - {"perturbation"}:
        red_lm_dir(cfg)  # trains the testbed's red LM now, with its own progress bar, if it is missing
    with progress() as bar:
        for method in rt.methods:
            task = bar.add_task(f"{label}: {method}", total=rt.budget, info="")
            target.on_batch = lambda m, task=task: bar.advance(task, m)
            t0, start = time.perf_counter(), target.generations
            rows = _method(cfg, target, seed, method, [a for done in attempts.values() for a in done])
            if target.generations - start != len(rows):
                raise RuntimeError(f"redteam {method}: {len(rows)} attempts for {target.generations - start} generations")
            attempts[method] = rows
            seconds[method] = time.perf_counter() - t0
            wins = sum(a.success for a in rows)
            bar.update(task, info=f"ASR {wins / max(1, len(rows)):.1%}")
    target.on_batch = None
    return attempts, seconds


def attack_policy(cfg: Config, policy_dir: Path, folder: Path, device: str) -> dict:
    """Attack the policy in ``policy_dir``; ``cases.jsonl``, the pairs and ``summary.json`` into ``folder``."""
    rt = cfg.redteam
    seed = cfg.seed_for(rt.seed)
    set_seed(seed)
    if not (policy_dir / "config.json").exists():
        raise ModelError(f"no policy to attack at {policy_dir} (redteam.policy, default ppo.output_dir)")
    target = build_target(cfg, policy_dir, chosen_judges(cfg, device), device, seed)
    attempts, seconds = attack(cfg, target, seed)
    meta = {"policy": str(policy_dir), "success_rule": rt.success, "budget": rt.budget, "seed": seed,
            "generation": cfg.eval.generation.model_dump(mode="json")}
    if rt.resamples:
        meta["pairs"] = _write_pairs(cfg, target, [a for rows in attempts.values() for a in rows if a.success], folder)
    summary = write_outputs(folder, attempts, target.thresholds, meta, seconds, rt.report_cases)
    for method, s in summary["methods"].items():
        lo, hi = s["asr_ci95"]
        console.print(f"redteam {method}: {s['successes']}/{s['attempts']} attacks succeeded, ASR {s['asr']:.1%} "
                      f"[{lo:.1%}, {hi:.1%}]; distinct-2 {s['distinct_2']}, self-BLEU {s['self_bleu']}")
    return summary


def run(cfg: Config, device: str | None = None) -> Path:
    device = device or str(stage_device(cfg))
    summary = attack_policy(cfg, target_dir(cfg), cfg.path(cfg.redteam.output_dir), device)
    if cfg.redteam.rounds:
        run_rounds(cfg, summary, device, attack_policy)
    return output(cfg)
