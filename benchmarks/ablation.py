"""Ablations on the embedded default, with the same seeds and the same budget:

- ``tiers``: the default (three-tier curriculum, composite reward of two judges);
- ``uniform``: the same reward, prompts drawn uniformly (the tiers are still logged);
- ``single-judge``: the same curriculum, the reward of one Meta-style judge (``log P(nothate) − p(hate)``,
  no severity tiers: the default before the composite; toxic-bert is scored beside it at weight 0, so that
  every arm's per-dimension rates come from the same judges);
- ``constitution``: the default with the constitution's penalty in PPO;
- ``rlaif``: PPO whose only toxicity signal is the frozen SFT model's self-critique (the ``self_critique``
  judge, ``log(1 − max_k P(violates k))`` over no-insults, no-profanity and respect-groups, weight 2, on
  the scale of the default's two judges at 0.5 each); the default's two judges stay in ``reward.judges`` at
  weight 0 with every dimension weight 0 and no severity tiers, so they add nothing to the reward and the
  evaluation has the same judges (trained-against and held-out) as every other arm. The reward's scale is
  not the default's, so the arm runs its full step budget (no ``stop_at_reward``). Its base run's SFT
  model must answer critique requests (``configs/sl-cai.yaml``'s ``sft.tasks``).

Every arm starts from the same base run (its testbed, SFT policy and judges, shared by symbolic links), so
only the PPO stage and the evaluation run per (arm, seed). Each run gets its own folder
``<out>/<arm>-seed<k>/`` with the usual files (``metrics.jsonl``, ``eval.json``, ...), and the summary
goes to ``<out>/ablation.json`` and ``<out>/ablation.md``. ``--jobs 2`` runs two (arm, seed) pairs at
once, one thread each (a 2-core machine's fastest way; each run's figures are those of one thread).

    .venv/bin/detoxrl run                                     # the base run, once (runs/default)
    .venv/bin/python benchmarks/ablation.py --arms tiers,uniform,single-judge --seeds 0,1,2 --jobs 2

Reported per arm (mean ± sample standard deviation over seeds): the final toxic rate of the held-out
judges the policy was not trained against (the testbed lexicon, alt-profanity-check, and either), the
toxic rate per dimension (over all judges), content kept on ambiguous prompts (over-correction),
ROUGE-L, the KL to the reference, and the area under the training-reward curve (the mean of
``reward/mean`` over the PPO steps, so that arms with the same number of steps compare directly; it is
on each arm's own reward scale).
Every arm's evaluation responses (before and after) are also checked against the default constitution
(``configs/constitution.yaml``), so violations per principle compare across arms.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

SINGLE_JUDGE = [
    # The reward of one Meta-style judge, log P(nothate) − p(hate), no severity tiers (the default before the
    # composite). The toxic-bert judge stays with weight 0 and its dimensions at weight 0: it adds nothing to
    # the reward and measures harassment, discrimination and profanity in eval as in the other arms.
    'reward.judges=[{name: testbed-hate, type: hf, model: "{run_dir}/judge", label: nothate, label_is_good: true, '
    'score: logprob, dimensions: {hate: hate}}, {name: testbed-toxic-bert, preset: toxic-bert, '
    'model: "{run_dir}/judge-multi", score: logprob, weight: 0.0}]',
    "reward.dimension_weights={hate: 1.0, harassment: 0.0, discrimination: 0.0, profanity: 0.0}",
    "reward.severity_tiers=[]",
]
RLAIF = [
    # The frozen SFT model's self-critique is the only signal; the two judges score at weight 0 (eval's judges
    # stay those of every arm) and no dimension or severity term reads them.
    'reward.judges=[{name: testbed-hate, type: hf, model: "{run_dir}/judge", label: nothate, label_is_good: true, '
    'score: logprob, dimensions: {hate: hate}, weight: 0.0}, {name: testbed-toxic-bert, preset: toxic-bert, '
    'model: "{run_dir}/judge-multi", score: logprob, weight: 0.0}, {name: self-critique, type: self_critique, '
    'model: "{run_dir}/sft", principles: [no-insults, no-profanity, respect-groups], score: logprob, weight: 2.0}]',
    "reward.dimension_weights={hate: 0.0, harassment: 0.0, discrimination: 0.0, profanity: 0.0}",
    "reward.severity_tiers=[]",
    "ppo.stop_at_reward=null",
]
ARMS = {
    "tiers": [],
    "uniform": ["curriculum.enabled=false"],
    "single-judge": SINGLE_JUDGE,
    "constitution": ["constitution.enabled=true"],
    "rlaif": RLAIF,
}
SHARED = ("testbed", "sft", "judge", "judge-multi")  # what every arm reuses from the base run


def link_base(base: Path, run: Path) -> None:
    run.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        src, dst = (base / name).resolve(), run / name
        if not src.exists():
            sys.exit(f"ablation: the base run {base} has no {name}/ (run `detoxrl run` first)")
        if not dst.exists():
            dst.symlink_to(src, target_is_directory=True)


def reward_auc(metrics: Path) -> float:
    """Mean of ``reward/mean`` over the logged PPO steps (area under the curve per step)."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    values = [r["reward/mean"] for r in rows if "reward/mean" in r]
    return sum(values) / len(values)


def one_run(base: Path, out: Path, arm: str, seed: int, extra: list[str]) -> dict:
    from detoxrl.config import load_config
    from detoxrl.pipeline import run_stage, stage_output

    run = out / f"{arm}-seed{seed}"
    link_base(base, run)
    overrides = [f"seed={seed}", "eval.seed=0", *ARMS[arm], *extra]
    cfg = load_config(overrides=overrides, run_dir=run)
    times = {}
    for stage in ("ppo", "eval"):
        if stage_output(cfg, stage).exists():
            continue  # finished earlier: an interrupted ablation resumes where it stopped
        t0 = time.perf_counter()
        run_stage(cfg, stage)
        times[stage] = round(time.perf_counter() - t0, 1)
    ev = json.loads((run / "eval.json").read_text())
    result = {"arm": arm, "seed": seed, "seconds": times, "reward_auc": reward_auc(run / "ppo" / "metrics.jsonl"),
              "rougeL_before": ev["before"]["rougeL"], "rougeL_after": ev["after"]["rougeL"],
              "kl_to_reference": ev["after"]["kl_to_reference"]}
    for side in ("before", "after"):
        if "held_out_toxic_rate" in ev[side]:
            result[f"toxic_rate_{side}/held-out (any)"] = ev[side]["held_out_toxic_rate"]
        for dim, d in ev.get("per_dimension", {}).get("all", {}).items():
            if not d.get("absent"):
                result[f"toxic_rate_{side}/dim:{dim}"] = d[side]["toxic_rate"]
        kept = ev.get("over_correction", {}).get("per_tier", {}).get("ambiguous", {})
        if kept.get(side) is not None:
            result[f"content_kept_{side}/ambiguous"] = kept[side]
        for judge, j in ev[side]["per_judge"].items():
            result[f"toxic_rate_{side}/{judge}"] = j["toxic_rate"]
    result.update(violations(cfg, run))
    return result


def violations(cfg, run: Path) -> dict[str, float]:
    """Share of the evaluation's responses (before and after) that violate each principle of the
    constitution, checked the same way for every arm, with or without the constitution in training."""
    from detoxrl.constitution.engine import ConstitutionEngine
    from detoxrl.data.prompts import fill_template
    from detoxrl.evaluation.table import read_eval_table

    rows = read_eval_table(run / "eval_table.csv")
    prompts = [fill_template(cfg.data.prompt_template, r["dialogue"]) for r in rows]
    engine = ConstitutionEngine.from_config(cfg, revision="none")
    out = {}
    for side in ("before", "after"):
        verdicts = engine.check([r[f"response_{side}"] for r in rows], prompts)
        for pid, flags in verdicts.violations.items():
            out[f"violations_{side}/{pid}"] = float(flags.float().mean())
    return out


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def summarise(results: list[dict]) -> dict:
    arms: dict[str, dict] = {}
    for arm in dict.fromkeys(r["arm"] for r in results):
        rows = [r for r in results if r["arm"] == arm]
        keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
        arms[arm] = {"seeds": [r["seed"] for r in rows],
                     **{k: dict(zip(("mean", "sd"), mean_sd([r[k] for r in rows]))) for k in keys}}
    return arms


def markdown(summary: dict) -> str:
    keys = [k for k in next(iter(summary.values())) if k != "seeds"]
    head = "| metric | " + " | ".join(f"{a} (n={len(s['seeds'])})" for a, s in summary.items()) + " |"
    lines = [head, "|" + " --- |" * (len(summary) + 1)]
    for k in keys:
        cells = []
        for s in summary.values():
            m = s.get(k)
            cells.append("—" if m is None else f"{m['mean']:.4f} ± {m['sd']:.4f}" if not math.isnan(m["sd"])
                         else f"{m['mean']:.4f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=Path("runs/default"), help="run folder with testbed, sft, judge")
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--arms", default="tiers,uniform,single-judge", help=f"comma-separated, from {', '.join(ARMS)}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=1, help="(arm, seed) runs at once, one thread each")
    ap.add_argument("--set", dest="extra", action="append", default=[],
                    help="extra dotted override for every arm (e.g. ppo.steps=60)")
    args = ap.parse_args()
    arms = args.arms.split(",")
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        sys.exit(f"ablation: unknown arm(s) {unknown}; choose from {list(ARMS)}")
    os.environ.setdefault("DETOXRL_NO_PROGRESS", "1")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(arm, seed) for seed in seeds for arm in arms]  # seeds outermost: a slower machine later hurts all arms alike
    if args.jobs > 1:
        os.environ["OMP_NUM_THREADS"] = "1"  # before torch loads in the workers
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(one_run, args.base, args.out, arm, seed, args.extra) for arm, seed in jobs]
            results = [f.result() for f in futures]
        for r in results:
            print(json.dumps(r), flush=True)
    else:
        results = []
        for arm, seed in jobs:
            results.append(one_run(args.base, args.out, arm, seed, args.extra))
            print(json.dumps(results[-1]), flush=True)
    summary = summarise(results)
    (args.out / "ablation.json").write_text(json.dumps({"runs": results, "summary": summary}, indent=2))
    table = markdown(summary)
    (args.out / "ablation.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
