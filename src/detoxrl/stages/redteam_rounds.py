"""``redteam.rounds``: red team → PPO → red team, inside the ``redteam`` stage.

Round 0 is the stage's attack on its policy (``redteam.policy``, default ``ppo.output_dir``), written to
``redteam.output_dir`` as without rounds. Round ``k`` (1 … ``rounds``), in ``{output_dir}/round-<k>/``:

1. ``prompts.jsonl``: the successful cases of rounds 0 … k−1 (every prompt found so far);
2. PPO continues from round k−1's policy for ``redteam.round_steps`` steps with those prompts added to the
   training prompts (``ppo.redteam_prompts``), ``redteam.round_share`` of every batch drawn from them from the
   first step and the rest uniformly from the others (no curriculum restart), the KL penalty still
   to PPO's usual starting model (with LoRA the adapter trains on; see :func:`detoxrl.stages.ppo.setup`),
   and saves ``policy/`` (its metrics, warnings and checkpoints in ``ppo/``); its seed is ``ppo.seed + k``,
   and its stop targets (``ppo.stop_at_reward``, ``ppo.stop_at_probe_toxic_rate``) are off, since the policy
   it continues from has met them already;
3. the same methods and budget attack the new policy: ``cases.jsonl``, ``summary.json`` (and the pairs).

The stage's own ``summary.json`` is then written again with ``rounds``: per round the policy and each
method's attack success rate. ``eval`` evaluates the last round's policy (:func:`final_policy`); the
stage's fingerprint holds the ``ppo``, ``curriculum`` and ``constitution`` settings when rounds are on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from detoxrl.config import Config
from detoxrl.redteam.outputs import CASES, SUMMARY
from detoxrl.stages import ppo as ppo_stage
from detoxrl.utils import console, read_jsonl, write_json, write_jsonl

PROMPTS = "prompts.jsonl"
POLICY = "policy"


def round_dir(cfg: Config, k: int) -> Path:
    return cfg.path(cfg.redteam.output_dir) / f"round-{k}"


def final_policy(cfg: Config) -> Path | None:
    """The last round's policy, which ``eval`` evaluates; None without rounds."""
    rounds = cfg.redteam.rounds if cfg.redteam.enabled else 0
    return round_dir(cfg, rounds) / POLICY if rounds else None


def round_config(cfg: Config, k: int) -> Config:
    """``cfg`` with round ``k``'s PPO: its steps, folders, found prompts (``redteam.round_share`` of every
    batch), seed, no stop targets, and the other prompts drawn uniformly: the policy a round continues has
    been through the curriculum, so it does not start over from the clean tier."""
    folder = round_dir(cfg, k)
    ppo = cfg.ppo.model_copy(update={
        "steps": cfg.redteam.round_steps, "output_dir": str(folder / POLICY), "work_dir": str(folder / "ppo"),
        "redteam_prompts": str(folder / PROMPTS), "redteam_share": cfg.redteam.round_share,
        "stop_at_reward": None, "stop_at_probe_toxic_rate": None, "seed": cfg.seed_for(cfg.ppo.seed) + k})
    curriculum = cfg.curriculum.model_copy(update={"enabled": False})
    return cfg.model_copy(update={"ppo": ppo, "curriculum": curriculum})


def start_of(cfg: Config, policy_dir: Path) -> str:
    """What a round continues from: the policy's LoRA adapter when it trains one, else the policy itself."""
    adapter = policy_dir / "adapter"
    return str(adapter if cfg.policy.lora.enabled and (adapter / "adapter_config.json").exists() else policy_dir)


def found_so_far(cfg: Config, k: int) -> list[dict]:
    """The successful cases of rounds 0 … k−1."""
    folders = [cfg.path(cfg.redteam.output_dir)] + [round_dir(cfg, j) for j in range(1, k)]
    return [row for f in folders for row in read_jsonl(f / CASES) if row.get("success", True)]


def round_row(k: int, summary: dict) -> dict:
    return {"round": k, "policy": summary["policy"],
            "methods": {m: {key: s[key] for key in ("attempts", "successes", "asr", "asr_ci95", "distinct_2",
                                                      "self_bleu")} for m, s in summary["methods"].items()}}


def run_rounds(cfg: Config, summary: dict, device: str, attack: Callable[[Config, Path, Path, str], dict]) -> list[dict]:
    """Rounds 1 … ``redteam.rounds`` after round 0's ``summary``; ``attack(cfg, policy_dir, folder, device)``
    is the stage's attack. Rewrites the stage's ``summary.json`` with ``rounds`` and returns them."""
    rows = [round_row(0, summary)]
    policy = Path(summary["policy"])
    for k in range(1, cfg.redteam.rounds + 1):
        rc, folder = round_config(cfg, k), round_dir(cfg, k)
        found = found_so_far(cfg, k)
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl(folder / PROMPTS, found)
        console.rule(f"redteam round {k}/{cfg.redteam.rounds}: PPO for {cfg.redteam.round_steps} steps on "
                     f"{len({c['text'] for c in found})} found prompts, from {policy}")
        ppo_stage.run(rc, start=start_of(cfg, policy))
        policy = cfg.path(rc.ppo.output_dir)
        rows.append(round_row(k, attack(rc, policy, folder, device)))
        for m, s in rows[-1]["methods"].items():
            console.print(f"redteam round {k} {m}: ASR {rows[0]['methods'][m]['asr']:.1%} (round 0) → {s['asr']:.1%}")
    write_json(cfg.path(cfg.redteam.output_dir) / SUMMARY, {**summary, "rounds": rows})
    return rows
