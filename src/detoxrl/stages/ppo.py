"""``ppo``: the RL stage. Sets up the policy, prompts, reward and sampler, resumes from a checkpoint,
runs :class:`detoxrl.rl.trainer.PPOTrainer` step by step, logs, checkpoints and saves the policy.

The algorithm itself lives in :mod:`detoxrl.rl`; this module only wires the pipeline's parts to it.
The probe of held-out prompts and the stop targets are :mod:`detoxrl.stages.ppo_monitor`'s.
Data-parallel under ``accelerate launch``: each process samples its slice of the global batch, and
only the main process writes metrics, checkpoints and the final model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from detoxrl.config import Config
from detoxrl.constitution.reward import with_constitution
from detoxrl.curriculum.difficulty import curriculum_scores
from detoxrl.curriculum.mixed import make_mixed_sampler
from detoxrl.curriculum.sampler import make_sampler
from detoxrl.curriculum.tiers import REDTEAM_MARK
from detoxrl.data.loaders import load_examples
from detoxrl.data.prompts import build_prompts, describe_prompt_stats
from detoxrl.errors import ConfigError, TrainingError
from detoxrl.models.policy import LoadedPolicy, is_peft, load_policy_model, save_policy, tokenize_prompts
from detoxrl.redteam.training import HARMFUL_TIER, harmful_examples, read_cases
from detoxrl.rewards.composite import CompositeReward
from detoxrl.rl import checkpoint as ckpt
from detoxrl.rl.trainer import PPOTrainer, Reward
from detoxrl.stages.constitution import start_model
from detoxrl.stages.device import policy_precision, stage_accelerator
from detoxrl.stages.fingerprint import SECTIONS, default_left_out, flatten
from detoxrl.stages.ppo_monitor import Monitor
from detoxrl.utils import atomic_dir, console, progress, set_seed


def output(cfg: Config) -> Path:
    """The file whose presence means the stage is done."""
    return cfg.path(cfg.ppo.output_dir) / "config.json"


def build_reward_fn(cfg: Config, device, policy: LoadedPolicy | None = None) -> Reward:
    """The configured composite reward, wrapped by the constitution's checks when it is enabled (they
    critique, revise and resample with ``policy``, the live PPO policy, when one is given)."""
    reward = CompositeReward.from_config(cfg, device=device)
    if not cfg.constitution.enabled:
        return reward
    return with_constitution(reward, cfg, device=device, policy=policy)


@dataclass
class Setup:
    """Everything the loop needs, built once."""

    acc: Accelerator
    lp: LoadedPolicy
    base_name: str
    texts: list[str]
    trainer: PPOTrainer
    sampler: object
    gen_rng: torch.Generator
    ckpt_root: Path
    run_config: dict = field(default_factory=dict)  # what checkpoints record (see run_config())
    config_changes: list = field(default_factory=list)  # settings changed on resume (--allow-config-change)
    precision: dict = field(default_factory=dict)  # policy.dtype and ppo.mixed_precision as resolved here
    monitor: Monitor | None = None  # probes, warnings and stop targets (stages/ppo_monitor.py)


def setup(cfg: Config, reward_fn: Reward | None = None, start: str | None = None) -> Setup:
    """Load the policy and the prompts, build the reward, the trainer and the prompt sampler. ``start``
    continues from a trained policy (a red-team round) with the KL still to the usual starting model: for
    LoRA ``start`` is its adapter folder (the reference is the adapter's base), else the reference is loaded."""
    s = cfg.ppo
    seed = cfg.seed_for(s.seed)
    acc = stage_accelerator(cfg)
    set_seed(seed + acc.process_index)
    dtype = policy_precision(cfg, acc)
    # the SL-CAI model when the constitution stage ran, else policy.name_or_path
    policy_settings = cfg.policy.model_copy(update={"name_or_path": start or start_model(cfg), "dtype": dtype.choice})
    lp = load_policy_model(policy_settings, device=acc.device, apply_lora=True)
    reference = None
    if start and not is_peft(lp.model):
        ref_settings = policy_settings.model_copy(update={"name_or_path": start_model(cfg)})
        reference = load_policy_model(ref_settings, device=acc.device)

    examples = load_examples(cfg, cfg.data.train_split).examples
    if s.redteam_prompts:
        examples = examples + harmful_examples(read_cases(cfg.path(s.redteam_prompts)))
    prompts, pstats = build_prompts(examples, lp.tokenizer, cfg.data)
    if not prompts:
        raise TrainingError(f"no training prompts left after filtering ({pstats})")
    if (note := describe_prompt_stats(pstats, cfg.data.max_prompt_tokens, cfg.data)) and acc.is_main_process:
        console.print(note)
    reward_fn = reward_fn or build_reward_fn(cfg, acc.device, policy=lp)
    trainer = PPOTrainer(s, lp, reward_fn, accelerator=acc, seed=seed, reference=reference)
    difficulty, tiers = curriculum_inputs(cfg, prompts, reward_fn, lp)
    if s.redteam_share is not None:
        sampler = make_mixed_sampler(cfg.curriculum, [bool(p.meta.get(REDTEAM_MARK)) for p in prompts],
                                     s.redteam_share, s.steps, seed, difficulty=difficulty, tiers=tiers)
    else:
        sampler = make_sampler(cfg.curriculum, len(prompts), s.steps, seed, difficulty=difficulty, tiers=tiers)
    return Setup(acc=acc, lp=lp, base_name=policy_settings.name_or_path, texts=[p.prompt for p in prompts],
                 trainer=trainer, sampler=sampler, gen_rng=torch.Generator().manual_seed(seed + 7),
                 ckpt_root=cfg.path(cfg.ppo.work_dir) / "checkpoints", run_config=run_config(cfg),
                 precision={p.key: p.as_dict() for p in (dtype, trainer.precision)},
                 monitor=Monitor.build(cfg, reward_fn, trainer))


RESUMABLE_CHANGES = frozenset({"ppo.steps", "ppo.checkpoint_every", "ppo.keep_checkpoints",
                               "ppo.collective_timeout_s", "ppo.stop_at_reward", "ppo.stop_window",
                               "ppo.stop_at_probe_toxic_rate", "ppo.probe_every"})
"""Keys a resumed run may change: how long it runs (its steps, its stop targets), how often it probes
(the probe's prompts and window stay) and how it checkpoints, not what it computes."""


def curriculum_inputs(cfg: Config, prompts, reward_fn, lp) -> tuple[np.ndarray | None, list[str] | None]:
    """``(difficulty, tiers)`` for the sampler. With the curriculum off both are ``None``, unless
    ``curriculum.difficulty`` is ``tier``: then the uniform sampler also gets them, to log the same tier
    shares as a curriculum arm. Under the ``tier`` source the red team's prompts are already harmful
    (graded by their judge severity); under the others :func:`harmful_last` makes them the hardest.
    Deterministic on every rank (judge scores, a column, or greedy responses): no collectives inside."""
    c = cfg.curriculum
    if not c.enabled and c.difficulty != "tier":
        return None, None
    difficulty, tiers = curriculum_scores(cfg, prompts, reward_fn, lp)
    return (difficulty if c.difficulty == "tier" else harmful_last(difficulty, prompts)), tiers


def harmful_last(difficulty, prompts) -> np.ndarray:
    """The red team's prompts (tier ``harmful``) get difficulty 1, the hardest: the curriculum's last tier."""
    out = np.asarray(difficulty, dtype=float).copy()
    for i, p in enumerate(prompts):
        if p.meta.get("tier") == HARMFUL_TIER:
            out[i] = 1.0
    return out


def run_config(cfg: Config) -> dict:
    """The settings a PPO run is made from (flattened), as its checkpoints record them."""
    full = flatten(cfg.model_dump(mode="json"))
    return {k: v for k, v in sorted(full.items())
            if any(k == s or k.startswith(s + ".") for s in SECTIONS["ppo"]) and not default_left_out(k, v)}


def check_resume_config(cfg: Config, saved: dict | None, checkpoint: Path, allow: bool) -> list[str]:
    """Compare the checkpoint's settings with the current ones: changes of :data:`RESUMABLE_CHANGES`
    are printed, any other refuses with the list unless ``allow``; returns the changes made."""
    if saved is None:
        console.print(f"[yellow]resume: {checkpoint.name} does not record its settings; not compared")
        return []
    now = run_config(cfg)
    diff = {k: (saved.get(k, "(unset)"), now.get(k, "(unset)")) for k in sorted(set(saved) | set(now))
            if saved.get(k, "(unset)") != now.get(k, "(unset)")}
    lines = [f"{k}: {a} → {b}" for k, (a, b) in diff.items()]
    forbidden = [line for k, line in zip(diff, lines) if k not in RESUMABLE_CHANGES]
    if forbidden and not allow:
        raise ConfigError(f"--resume: {checkpoint} was made with other settings, which cannot change in the "
                          "middle of a run:\n  " + "\n  ".join(forbidden)
                          + "\n(--allow-config-change resumes anyway and records the change)")
    for line in lines:
        console.print(f"resume: {line}" + ("  [yellow](allowed by --allow-config-change)"
                                           if line in forbidden else ""))
    return forbidden


def resume_from_checkpoint(cfg: Config, st: Setup, allow_config_change: bool = False) -> int:
    """Restore the latest complete checkpoint into ``st``; return its step (0 when there is none)."""
    latest = ckpt.latest_checkpoint(st.ckpt_root)
    if latest is None:
        console.print("resume: no complete checkpoint found; starting from step 0")
        return 0
    step, model_state, opt_state, state = ckpt.load_checkpoint(latest)
    changed = check_resume_config(cfg, state.get("config"), latest, allow_config_change)
    if changed:
        st.config_changes.append({"at_step": step, "checkpoint": latest.name, "changes": changed})
        if st.acc.is_main_process:
            with open(cfg.path(cfg.ppo.work_dir) / "config_changes.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(st.config_changes[-1]) + "\n")
    st.trainer.load_state(model_state, opt_state, state["trainer"])
    st.monitor.load_state_dict(state.get("monitor"))
    st.sampler.load_state_dict(state["sampler"])
    st.gen_rng.set_state(state["gen_rng"])
    ckpt.set_rng_state(state["rng"][min(st.acc.process_index, len(state["rng"]) - 1)])
    console.print(f"resume: continuing from {latest.name}")
    if st.acc.is_main_process:
        _truncate_metrics(cfg.path(cfg.ppo.work_dir) / "metrics.jsonl", step)
    return step


def run(cfg: Config, resume: bool = False, reward_fn: Reward | None = None,
        allow_config_change: bool = False, start: str | None = None) -> Path:
    """Run the PPO stage of ``cfg`` and save the policy to ``ppo.output_dir``.

    ``resume`` continues from the newest complete checkpoint (one is written at the last step too, so
    a finished run can be extended with a larger ``ppo.steps``); ``start``: see :func:`setup`."""
    st = setup(cfg, reward_fn, start)
    start = resume_from_checkpoint(cfg, st, allow_config_change) if resume else 0
    world, rank = st.acc.num_processes, st.acc.process_index
    with MetricLog(cfg.path(cfg.ppo.work_dir), st.acc.is_main_process, append=resume and start > 0) as log:
        train_loop(cfg, st, start, log)
    console.print(f"ppo: process {rank + 1}/{world} finished at step {st.trainer.step_count}")
    stop = st.monitor.finish(st.trainer.step_count)
    if st.acc.is_main_process:
        console.print(f"ppo: stopped after step {stop['step']}: {stop['reason']}")
    out = cfg.path(cfg.ppo.output_dir)
    st.acc.wait_for_everyone()
    if st.acc.is_main_process:
        with atomic_dir(out) as tmp:
            save_policy(st.trainer.unwrapped.lm, st.lp.tokenizer, tmp, value_head=st.trainer.unwrapped.value_head,
                        base_name=st.base_name, extra={"stage": "ppo", "steps": cfg.ppo.steps,
                                                       "steps_done": st.trainer.step_count, "stop": stop,
                                                       "skipped_steps": st.trainer.skipped_steps,
                                                       "config_changes": st.config_changes,
                                                       "precision": st.precision,
                                                       "probe_warnings": st.monitor.warnings})
        console.print(f"ppo: saved the policy to {out}")
    st.acc.wait_for_everyone()
    return out


def train_loop(cfg: Config, st: Setup, start: int, log: MetricLog) -> None:
    """Steps ``start + 1 … ppo.steps``: sample prompts, one PPO step, observe, probe when due, log,
    checkpoint; a stop target that is met ends the loop after that step's checkpoint.

    A collective that times out (``ppo.collective_timeout_s``) or loses its peer ends the run with an
    error naming the process, the step and the phase; checkpoints written so far stay complete.
    """
    s, acc, trainer = cfg.ppo, st.acc, st.trainer
    world, rank = acc.num_processes, acc.process_index
    step = start
    st.monitor.start()
    if st.monitor.restored_stop(start):
        return  # resumed from a run that had met its stop target, which the settings still ask for
    try:
        with progress(disable=None if acc.is_main_process else True) as bar:
            task = bar.add_task("ppo", total=s.steps, completed=start, info="")
            for step in range(start + 1, s.steps + 1):
                idx = st.sampler.next_batch(s.batch_size * world)[rank::world]
                batch_prompts = [st.texts[i] for i in idx]
                q, qm = tokenize_prompts(st.lp.tokenizer, batch_prompts, cfg.data.max_prompt_tokens, acc.device)
                stats = trainer.step(batch_prompts, q, qm, trainer.max_new_tokens(st.gen_rng))
                if (rewards := stats.get("reward/mean")) is not None:
                    st.sampler.observe(step, [rewards])  # a mean over every rank: the same everywhere
                stats.update(st.sampler.log_stats())
                stop = st.monitor.after_step(step, stats, trainer)  # probes when due; stop targets
                log.write(step, stats)
                bar.update(task, completed=step, info=_progress_info(stats))
                if (s.checkpoint_every and step % s.checkpoint_every == 0) or step == s.steps or stop:
                    trainer.phase = "checkpoint"
                    save_checkpoint(st, step, s.keep_checkpoints)
                if stop:
                    break
    except RuntimeError as exc:
        if world > 1 and _is_collective_failure(exc):
            latest = ckpt.latest_checkpoint(st.ckpt_root)
            kept = f"the last complete checkpoint, {latest}, is kept" if latest else "no checkpoint had been written"
            raise TrainingError(
                f"process {rank + 1}/{world}: step {step}, phase '{trainer.phase}': a collective with the other "
                f"processes did not complete within ppo.collective_timeout_s={s.collective_timeout_s} s "
                f"(the processes are out of step, or one of them died); {kept}. "
                f"Cause: {str(exc).splitlines()[0][:300]}") from exc
        raise


def save_checkpoint(st: Setup, step: int, keep: int) -> None:
    """Every rank's RNG state is gathered; the main process writes the checkpoint."""
    rng_states = [ckpt.rng_state()]
    if st.acc.num_processes > 1:
        rng_states = gather_object(rng_states)
    if st.acc.is_main_process:
        state = {"trainer": st.trainer.state(), "sampler": st.sampler.state_dict(),
                 "gen_rng": st.gen_rng.get_state(), "rng": rng_states, "config": st.run_config,
                 "monitor": st.monitor.state_dict()}
        ckpt.save_checkpoint(st.ckpt_root, step, st.trainer.trainable_state(),
                             st.trainer.optimizer.state_dict(), state, keep=keep)
    st.acc.wait_for_everyone()


# ------------------------------------------------------------------------------------------ logging
class MetricLog:
    """``ppo/metrics.jsonl`` (one JSON line per step) and TensorBoard, written by the main process only."""

    def __init__(self, ppo_dir: Path, enabled: bool, append: bool):
        self.fh = self.tb = None
        if not enabled:
            return
        ppo_dir.mkdir(parents=True, exist_ok=True)
        self.fh = open(ppo_dir / "metrics.jsonl", "a" if append else "w", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional at run time, and slow to import

            self.tb = SummaryWriter(str(ppo_dir / "tensorboard"))
        except Exception:
            self.tb = None

    def write(self, step: int, stats: dict) -> None:
        if self.fh is None:
            return
        self.fh.write(json.dumps({k: _jsonable(v) for k, v in stats.items()}) + "\n")
        self.fh.flush()
        if self.tb is not None:
            for k, v in stats.items():
                if isinstance(v, (int, float)) and k != "step" and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def __enter__(self) -> MetricLog:
        return self

    def __exit__(self, *exc) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.tb is not None:
            self.tb.close()


def _progress_info(stats: dict) -> str:
    return (f"reward {stats.get('reward/mean', float('nan')):+.3f} "
            f"kl {stats.get('kl/mean', float('nan')):.3f} "
            f"β {stats.get('kl/coef', float('nan')):.3f} "
            f"{stats.get('perf/tokens_per_s', 0):.0f} tok/s")


def _truncate_metrics(path: Path, last_step: int) -> None:
    """On resume, drop metric lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                keep.append(line)
        except ValueError:
            continue  # a torn last line from a kill
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def _is_collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is torch.distributed giving up on a collective (time-out, or a peer gone)."""
    dist_error = getattr(torch.distributed, "DistError", ())
    text = str(exc).lower()
    return isinstance(exc, dist_error) or any(w in text for w in ("timed out", "timeout", "connection closed",
                                                                    "connection reset", "gloo"))


def _jsonable(v):
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
