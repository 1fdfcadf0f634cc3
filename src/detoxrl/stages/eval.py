"""``eval``: before/after evaluation of the policy on held-out prompts → ``eval.json``, ``eval_table.csv``.

The policy evaluated (*after*) is ``ppo.output_dir``'s, or with ``redteam.rounds`` the last red-team round's
(:func:`evaluated_policy`). ``eval.json`` names the models it compared by their stages' fingerprints
(``made_from``), so a stale evaluation is recognised: the report warns when the policy's fingerprint has
changed since. With ``eval.redteam_replay`` a fixed red-team set is replayed on both models, with
``eval.redteam_attack`` a fresh attack runs against both (:func:`redteam_attack`).
"""

from __future__ import annotations

from pathlib import Path

from detoxrl.config import Config
from detoxrl.errors import ModelError
from detoxrl.evaluation.evaluate import run_eval
from detoxrl.evaluation.printing import print_redteam
from detoxrl.evaluation.summary import json_clean
from detoxrl.redteam.outputs import write_outputs
from detoxrl.redteam.replay import replay
from detoxrl.redteam.training import read_cases
from detoxrl.stages import fingerprint
from detoxrl.stages import redteam as redteam_stage
from detoxrl.stages.device import is_main_process, stage_device
from detoxrl.stages.redteam import attack, build_target, chosen_judges
from detoxrl.stages.redteam_rounds import final_policy
from detoxrl.utils import console, set_seed, write_json

ATTACK_DIR = "eval-redteam"


def output(cfg: Config) -> Path:
    return cfg.run_path / "eval.json"


def evaluated_policy(cfg: Config) -> tuple[Path, str, Path]:
    """``(folder, stage, stage output)`` of the policy ``eval`` evaluates: ``ppo.output_dir`` made by
    ``ppo``, or with ``redteam.rounds`` the last round's policy, made by ``redteam``."""
    last = final_policy(cfg)
    if last is not None:
        return last, "redteam", redteam_stage.output(cfg)
    folder = cfg.path(cfg.ppo.output_dir)
    return folder, "ppo", folder / "config.json"


def made_from(cfg: Config) -> dict[str, str | None]:
    """The fingerprint hashes of the evaluated policy's stage and of the reference (``sft``), if recorded."""
    _, stage, out = evaluated_policy(cfg)
    found = {}
    for key, st, path in (("policy", stage, out), ("reference", "sft", cfg.path(cfg.sft.output_dir) / "config.json")):
        fp = fingerprint.read(path, st)
        found[key] = fp.get("hash") if fp else None
    return found


def redteam_replay(cfg: Config, after: Path, device: str | None = None) -> dict:
    """``eval.redteam_replay``'s prompts answered by the reference (before) and the policy (after)."""
    device = device or str(stage_device(cfg))
    cases = read_cases(cfg.path(cfg.eval.redteam_replay))
    judges = chosen_judges(cfg, device)
    seed = cfg.seed_for(cfg.eval.seed)
    targets = [build_target(cfg, name, judges, device, seed, batch_size=cfg.eval.batch_size)
               for name in (cfg.resolve(cfg.policy.name_or_path), after)]
    out = replay(targets[0], targets[1], cases, cfg.redteam.success)
    out["file"] = str(cfg.path(cfg.eval.redteam_replay))
    return out


def attack_config(cfg: Config) -> Config:
    """``cfg`` with ``eval.redteam_attack``'s budget and methods in the ``redteam`` section."""
    ea = cfg.eval.redteam_attack
    return cfg.model_copy(update={"redteam": cfg.redteam.model_copy(update={"budget": ea.budget,
                                                                            "methods": list(ea.methods)})})


def redteam_attack(cfg: Config, after: Path, device: str | None = None) -> dict:
    """``eval.redteam_attack``: the ``redteam`` stage's attack (:func:`detoxrl.stages.redteam.attack`), of the
    same budget and seed, against the policy (after) and the reference (before); each side's attempts go to
    ``{run_dir}/eval-redteam/<side>/`` as the stage writes them, and its per-method summary to the result."""
    device, acfg = device or str(stage_device(cfg)), attack_config(cfg)
    rt = acfg.redteam
    judges = chosen_judges(cfg, device)
    seed = cfg.seed_for(rt.seed)
    out: dict = {"budget": rt.budget, "methods": list(rt.methods), "rule": rt.success, "seed": seed,
                 "judges": [{"name": ej.name, "threshold": ej.threshold} for ej in judges]}
    for side, name in (("after", str(after)), ("before", cfg.resolve(cfg.policy.name_or_path))):
        set_seed(seed)
        target = build_target(acfg, name, judges, device, seed)
        attempts, seconds = attack(acfg, target, seed, label=f"eval attack ({side})")
        folder = cfg.run_path / ATTACK_DIR / side
        meta = {"policy": name, "success_rule": rt.success, "budget": rt.budget, "seed": seed}
        summary = write_outputs(folder, attempts, target.thresholds, meta, seconds, rt.report_cases)
        out[side] = {"model": name, "folder": str(folder), "methods": summary["methods"]}
    return out


def run(cfg: Config, samples: int | None = None) -> Path:
    after, stage, _ = evaluated_policy(cfg)
    if stage == "redteam" and not (after / "config.json").exists():
        raise ModelError(f"no policy at {after}: redteam.rounds={cfg.redteam.rounds} evaluates the last red-team "
                         "round's policy, which the redteam stage makes (`detoxrl run`, or `detoxrl redteam`)")
    if stage == "redteam":
        console.print(f"eval: the policy of red-team round {cfg.redteam.rounds}, {after}")
    result = run_eval(cfg, samples=samples, after_dir=after)
    if cfg.eval.redteam_replay:
        result["redteam_replay"] = json_clean(redteam_replay(cfg, after))
    if cfg.eval.redteam_attack:
        result["redteam_attack"] = json_clean(redteam_attack(cfg, after))
    print_redteam(result)
    if is_main_process():
        result["made_from"] = made_from(cfg)
        write_json(output(cfg), result)
    return output(cfg)
