"""What the PPO stage watches while it trains: the probe of held-out prompts (``ppo.probe_every``), the
reward-hacking warning, and the stop targets (``ppo.stop_at_reward``, ``ppo.stop_at_probe_toxic_rate``).

The run stops at the first of

- ``stop_at_reward``: the moving mean of ``reward/mean`` over the last ``stop_window`` steps that had a
  reward (a skipped step has none) and drew from every prompt (``curriculum/competence`` 1: a curriculum's
  early steps see only its easy prompts, whose reward says nothing about the hard ones) reaches the target
  (:func:`moving_mean_reached`);
- ``stop_at_probe_toxic_rate``: a probe's held-out toxic rate is at most the target;
- ``ppo.steps``.

It then writes its last checkpoint and saves the policy exactly as at the end; the reason goes to the
console, to ``detoxrl.json`` beside the policy (``stop``), and so to the report and the model card.
Warnings (:func:`detoxrl.evaluation.probe.reward_hacking`) are printed, written to
``ppo/warnings.jsonl``, flagged in ``metrics.jsonl`` (``probe/warning``) and kept in ``detoxrl.json``
(``probe_warnings``).

Under data parallelism ``reward/mean`` is gathered from every rank, so every rank computes the same
moving mean; the probe runs on the main process only, outside any collective (the other ranks wait for it
in their next collective, so it must take less than ``ppo.collective_timeout_s``). Whenever a stop target
is set, every rank then takes part in one all-reduce per step (:meth:`PPOTrainer.agree`), so all of them
stop at the same step. The history the rules read is checkpointed, so a resumed run decides as the
uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import DistributedType

from detoxrl.config import Config, PPOSettings
from detoxrl.errors import ConfigError, TrainingError
from detoxrl.evaluation.probe import Probe, reward_hacking
from detoxrl.rl.trainer import PPOTrainer
from detoxrl.utils import console

STEPS_REACHED = "ppo.steps reached"
WARNINGS_FILE = "warnings.jsonl"


def moving_mean_reached(rewards: Sequence[float], target: float, window: int) -> float | None:
    r"""The moving mean :math:`m = \frac1W \sum_{i=n-W+1}^{n} r_i` of the last ``W = window`` rewards when
    it reaches ``target`` (:math:`m \ge` ``target``); ``None`` when it does not, or while fewer than
    ``window`` rewards exist."""
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    if len(rewards) < window:
        return None
    mean = math.fsum(rewards[-window:]) / window
    return mean if mean >= target else None


def reward_stop_reason(target: float, mean: float, window: int, step: int) -> str:
    return f"reached stop_at_reward {target:g}: moving mean {mean:.4g} over {window} steps at step {step}"


def probe_stop_reason(target: float, rate: float, step: int) -> str:
    return f"reached stop_at_probe_toxic_rate {target:g}: probe toxic rate (held-out judges) {rate:.4g} at step {step}"


def _shards_parameters(acc: Accelerator) -> bool:
    """FSDP and ZeRO-3 gather parameters with collectives in every forward pass: one process cannot generate alone."""
    if acc.distributed_type == DistributedType.FSDP:
        return True
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    return acc.distributed_type == DistributedType.DEEPSPEED and getattr(plugin, "zero_stage", 0) == 3


@dataclass
class Monitor:
    """The probes, warnings and stop decisions of one PPO run (module doc)."""

    s: PPOSettings
    ppo_dir: Path
    main: bool
    probe: Probe | None = None  # main process, ppo.probe_every > 0
    rewards: list[float] = field(default_factory=list)  # reward/mean of every step that had one
    probes: list[dict] = field(default_factory=list)  # {"step", "probe/…"} of every probe
    warnings: list[dict] = field(default_factory=list)  # {"step", "kind", "message"}
    stop: dict | None = None  # {"reason", "step"} once decided

    @classmethod
    def build(cls, cfg: Config, reward_fn, trainer: PPOTrainer) -> Monitor:
        """The monitor of every rank; the main process builds the probe, and when it cannot (no evaluation
        prompts, a judge that does not load) every rank raises, instead of waiting for it."""
        acc = trainer.acc
        probe, error = None, None
        if cfg.ppo.probe_every:
            if _shards_parameters(acc):
                raise ConfigError("ppo.probe_every: the probe generates on the main process alone, which FSDP and "
                                  "DeepSpeed ZeRO-3 cannot do (their forward passes are collective); set it to 0")
            if acc.is_main_process:
                try:
                    probe = Probe.build(cfg, reward_fn, trainer.lp.tokenizer, acc.device)
                except Exception as exc:  # noqa: BLE001 - re-raised below, once the other ranks know
                    error = exc
            if trainer.agree(error is not None)[0]:
                if error is not None:
                    raise error
                raise TrainingError("ppo.probe_every: the main process could not build the probe (its error says why)")
        return cls(cfg.ppo, cfg.path(cfg.ppo.work_dir), acc.is_main_process, probe)

    @property
    def targets(self) -> bool:
        return self.s.stop_at_reward is not None or self.s.stop_at_probe_toxic_rate is not None

    # ------------------------------------------------------------------------------------ steps
    def start(self) -> None:
        """``ppo/warnings.jsonl`` as the (restored) history has it: empty on a fresh run, cut back on resume."""
        if not self.main:
            return
        path = self.ppo_dir / WARNINGS_FILE
        if not self.warnings:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(w) + "\n" for w in self.warnings), encoding="utf-8")

    def after_step(self, step: int, stats: dict, trainer: PPOTrainer) -> bool:
        """Record the step's reward, probe when due (adding the figures to ``stats``), warn; whether the run
        stops at this step (the same answer on every rank)."""
        reward = stats.get("reward/mean")
        every_prompt = float(stats.get("curriculum/competence", 1.0)) >= 1.0
        if isinstance(reward, (int, float)) and math.isfinite(reward) and every_prompt:
            self.rewards.append(float(reward))
        if self.probe is not None and step % self.s.probe_every == 0:
            trainer.phase = "probe"
            figures = self.probe.run(dataclasses.replace(trainer.lp, model=trainer.unwrapped.lm), trainer.amp)
            stats.update(figures)
            self.probes.append({"step": step, **{k: v for k, v in figures.items() if k.startswith("probe/")}})
            if self._warn(step):
                stats["probe/warning"] = 1
        if not self.targets:
            return False
        reason = self.reason(step)
        trainer.phase = "agreeing on a stop"
        stop, _ = trainer.agree(reason is not None)
        if stop:
            self.stop = {"reason": reason or f"stopped at step {step} by the main process's probe "
                                              f"(stop_at_probe_toxic_rate {self.s.stop_at_probe_toxic_rate:g})",
                         "step": step}
            stats["ppo/stop"] = 1
        return stop

    def reason(self, step: int, any_probe: bool = False) -> str | None:
        """Why the run should stop after ``step`` (``None``: it should not): the reward target, then the probe's
        on the last probe (only when it was taken at ``step``, unless ``any_probe``). Reads the history only."""
        s = self.s
        if s.stop_at_reward is not None:
            mean = moving_mean_reached(self.rewards, s.stop_at_reward, s.stop_window)
            if mean is not None:
                return reward_stop_reason(s.stop_at_reward, mean, s.stop_window, step)
        last = self.probes[-1] if self.probes else None
        if s.stop_at_probe_toxic_rate is not None and last is not None and (any_probe or last["step"] == step):
            rate = last.get("probe/toxic_rate_heldout")
            if isinstance(rate, (int, float)) and math.isfinite(rate) and rate <= s.stop_at_probe_toxic_rate:
                return probe_stop_reason(s.stop_at_probe_toxic_rate, rate, last["step"])
        return None

    def restored_stop(self, step: int) -> bool:
        """On resume: whether the restored history already meets a (possibly changed) target, so that a
        run that stopped at its target does not train further (every rank restores the same history)."""
        reason = self.reason(step, any_probe=True) if step > 0 else None
        if reason is not None:
            self.stop = {"reason": reason, "step": step}
        return reason is not None

    def finish(self, step: int) -> dict:
        """The stop record: the decided one, or :data:`STEPS_REACHED`."""
        if self.stop is None:
            self.stop = {"reason": STEPS_REACHED, "step": step}
        return self.stop

    def _warn(self, step: int) -> bool:
        message = reward_hacking(self.probes, self.s.probe_window)
        if message is None:
            return False
        record = {"step": step, "kind": "reward_hacking", "message": message}
        self.warnings.append(record)
        console.print(f"[yellow]ppo: warning at step {step}: {message}")
        self.ppo_dir.mkdir(parents=True, exist_ok=True)
        with open(self.ppo_dir / WARNINGS_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        return True

    # ------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"rewards": list(self.rewards), "probes": list(self.probes), "warnings": list(self.warnings)}

    def load_state_dict(self, state: dict | None) -> None:
        state = state or {}  # checkpoints of earlier versions hold no history
        self.rewards = [float(r) for r in state.get("rewards", [])]
        self.probes = list(state.get("probes", []))
        self.warnings = list(state.get("warnings", []))
