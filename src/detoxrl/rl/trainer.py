"""The PPO trainer. It orchestrates; the maths lives in :mod:`detoxrl.rl.core` and :mod:`detoxrl.rl.kl`.

One :meth:`PPOTrainer.step`, in order (CleanRL style, every detail visible):

1. **generate**: the policy samples responses with plain sampling (top_k=0, top_p=1), so the logprobs
   are its own;
2. **score**: the reward scores the responses, optionally penalising responses without EOS; the scores
   are normalised and clipped;
3. **reference logprobs**: old logprobs and values from the policy, reference logprobs from the frozen
   reference (LoRA: the same weights with adapters disabled; full fine-tuning: a frozen copy);
4. **advantages**: per-token KL penalty with the score on the last response token, GAE, whitening;
5. **epochs of minibatch updates**: clipped policy loss + clipped value loss, gradient clipping, early
   stop of the epochs when the approximate KL runs away;
6. the KL controller adapts and the step's statistics are returned.

Data-parallel under ``accelerate launch``: each process takes its slice of the global batch, gradients
are all-reduced by DDP, the statistics that steer training are gathered, and every decision that
changes how many collectives a rank runs is agreed between ranks (:meth:`PPOTrainer._agree`).
The prompt sampling, logging and checkpoints around it are the PPO stage's (:mod:`detoxrl.stages.ppo`).
"""

from __future__ import annotations

import copy
import time

import torch
from accelerate import Accelerator

from detoxrl.config import PPOSettings
from detoxrl.errors import TrainingError
from detoxrl.models.policy import (
    Generation,
    LoadedPolicy,
    PolicyWithValue,
    forward_response,
    generate_from_ids,
    is_peft,
    length_multiple,
)
from detoxrl.models.precision import resolve_mixed_precision
from detoxrl.optim import MasterWeights, allocate_adam_state
from detoxrl.rl import fastpaths
from detoxrl.rl.core import (
    RunningMoments,
    apply_missing_eos_penalty,
    compute_rewards,
    entropy_from_logits,
    full_kl_from_logits,
    gae,
    logprobs_from_logits,
    masked_mean,
    masked_whiten,
    normalize_scores,
    ppo_policy_loss,
    ppo_value_loss,
    should_early_stop,
    spread_scores,
)
from detoxrl.rl.dense import prefix_potentials
from detoxrl.rl.fastpaths import pad_to_multiple
from detoxrl.rl.kl import make_kl_controller
from detoxrl.rl.rollout import Reward, RewardOutput, Rollout
from detoxrl.rl.step_stats import component_stats, step_statistics
from detoxrl.utils import console

__all__ = ["PPOTrainer", "Reward", "RewardOutput", "Rollout"]


class PPOTrainer:
    """Holds the models, optimiser and controllers; :meth:`step` runs one PPO iteration."""

    def __init__(self, settings: PPOSettings, policy: LoadedPolicy, reward_fn: Reward, *,
                 accelerator: Accelerator | None = None, seed: int = 0, reference: LoadedPolicy | None = None,
                 reuse_encoder: bool = True):
        self.acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.precision = resolve_mixed_precision(settings.mixed_precision, self.acc.device,
                                                 weights=getattr(policy.model, "dtype", torch.float32))
        self.s = settings.model_copy(update={"mixed_precision": self.precision.choice})  # auto: bf16 or no
        self.lp = policy
        self.reward_fn = reward_fn
        self.seed = seed
        self.use_lora = is_peft(policy.model)
        self.ref_model = None if self.use_lora else self._frozen_reference(policy, reference)
        self.module = PolicyWithValue(policy.model, policy.is_seq2seq)
        if settings.freeze_encoder:
            if not policy.is_seq2seq:
                raise TrainingError("ppo.freeze_encoder needs an encoder-decoder policy (T5, BART); this one is "
                                    "decoder-only")
            self.module.lm.get_encoder().requires_grad_(False)
        # Dropout off: logprobs at rollout time and at update time must come from the same function.
        self.module.eval()
        # Low-precision trainable weights (policy.dtype bfloat16/float16) get float32 masters.
        self.masters = MasterWeights([p for p in self.module.parameters() if p.requires_grad])
        if self.masters and self.acc.distributed_type not in fastpaths.PLAIN_DISTRIBUTED:
            raise TrainingError(f"policy.dtype {policy.model.dtype} with {self.acc.distributed_type.value}: "
                                "load the policy in float32 and let the backend keep low-precision copies")
        by_id = {id(p): m for p, m in self.masters.pairs}
        self._master_by_name = {n: by_id[id(p)] for n, p in self.module.named_parameters() if id(p) in by_id}
        self._trainable_names = {n for n, p in self.module.named_parameters() if p.requires_grad}
        fused = fastpaths.fused_adam_supported(self.masters.params)
        self.optimizer = torch.optim.AdamW(self.masters.params, lr=settings.learning_rate,
                                           eps=settings.adam_eps, weight_decay=0.0, fused=fused or None)
        self.model, self.optimizer = self.acc.prepare(self.module, self.optimizer)
        allocate_adam_state(self.optimizer)
        # Bucketed lengths where oneDNN would otherwise keep new kernels for every new shape.
        self.length_multiple = length_multiple(settings.length_multiple, self.unwrapped.lm,
                                               autocast=self.s.mixed_precision == "bf16")
        self.kl_ctl = make_kl_controller(settings.kl)
        self.score_moments = RunningMoments()
        self.reuse_encoder = reuse_encoder
        self.skipped_steps = 0
        self.step_count = 0
        self.phase = "setup"  # what the trainer is doing, named in the error when a collective times out

    def _frozen_reference(self, policy: LoadedPolicy, reference: LoadedPolicy | None) -> torch.nn.Module:
        """Full fine-tuning's reference: a frozen copy of the policy (LoRA uses disabled adapters)."""
        ref = reference.model if reference is not None else copy.deepcopy(policy.model)
        ref.eval().requires_grad_(False)
        if self.s.mixed_precision == "bf16":
            fastpaths.store_linear_weights_bf16(ref)
        return ref.to(self.acc.device)

    # ------------------------------------------------------------------------------ helpers
    def amp(self):
        """bfloat16 autocast for forward passes when ``ppo.mixed_precision`` is ``bf16``."""
        return torch.autocast(device_type=self.acc.device.type, dtype=torch.bfloat16,
                              enabled=self.s.mixed_precision == "bf16")

    def _tempered(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits / temperature``; at temperature 1 the logits themselves (no [B, T, V] copy)."""
        t = self.s.generation.temperature
        return logits if t == 1.0 else logits / t

    @property
    def unwrapped(self) -> PolicyWithValue:
        """The policy-with-value-head itself. Under accelerate's dynamo backend ``unwrap_model`` keeps the
        compiled wrapper, whose parameter names gain an ``_orig_mod.`` prefix: checkpoints, generation and
        the no-grad passes use the module itself, and only the update passes run compiled."""
        model = self.acc.unwrap_model(self.model)
        return getattr(model, "_orig_mod", model)

    def _gather_mean(self, x: torch.Tensor) -> float:
        return float(self.acc.gather(x.detach().reshape(-1).float()).mean())

    def _agree(self, flag: bool, value: float = 0.0) -> tuple[bool, float]:
        """``(any rank's flag, the mean of every rank's value)``, the same on every rank.

        Under data parallelism every decision that changes how many collectives a rank runs (skip a step,
        skip a minibatch, stop an epoch early) must be taken from the same numbers on every rank, or one
        rank waits in a gather while another waits in DDP's gradient all-reduce. One all-reduce of two
        numbers; on a single process the inputs themselves.
        """
        if self.acc.num_processes == 1:
            return bool(flag), float(value)
        t = torch.tensor([1.0 if flag else 0.0, float(value)], dtype=torch.float64, device=self.acc.device)
        t = self.acc.reduce(t, reduction="sum")
        return bool(t[0].item() > 0), float(t[1].item()) / self.acc.num_processes

    def agree(self, flag: bool, value: float = 0.0) -> tuple[bool, float]:
        """:meth:`_agree` for the loop around the trainer (the PPO stage's stop decisions): every rank must
        call it at the same point."""
        return self._agree(flag, value)

    def _clip_gradients(self) -> torch.Tensor | None:
        """Clip to ``ppo.max_grad_norm`` (:func:`detoxrl.rl.fastpaths.clip_grad_norm`); the norm before."""
        wrapped = self.masters.params if self.masters else self.model.parameters()
        return fastpaths.clip_grad_norm(self.masters.params, self.s.max_grad_norm, self.acc, wrapped)

    def _frozen_encoder(self) -> bool:
        """The encoder output can be reused in the update passes when the encoder does not train.

        (Right after generation it is always reusable: the old-logprob pass sees the same weights.)
        """
        if not self.lp.is_seq2seq or not self.reuse_encoder:
            return False
        enc = self.unwrapped.lm.get_encoder()
        return not any(p.requires_grad for p in enc.parameters())

    def _chunked(self, ro: Rollout, fn) -> list:
        """``fn(rows)`` over consecutive minibatch-sized slices of the rollout, in order."""
        mb = self.s.mini_batch_size
        return [fn(slice(i, i + mb)) for i in range(0, len(ro), mb)]

    @torch.no_grad()
    def _policy_forward_nograd(self, ro: Rollout, with_logits: bool = False):
        """Old logprobs [B, T], values [B, T] and entropies [B, T] (and the tempered logits, if asked)."""
        def one(sl):
            enc = ro.encoder_hidden[sl] if ro.encoder_hidden is not None else None
            with self.amp():
                logits, v = self.unwrapped(ro.query_ids[sl], ro.query_mask[sl], ro.response_ids[sl],
                                           ro.response_mask[sl], encoder_hidden=enc)
            logits = self._tempered(logits)
            return (logprobs_from_logits(logits, ro.response_ids[sl]), v.float(), entropy_from_logits(logits),
                    logits if with_logits else None)

        lps, values, ents, logits = zip(*self._chunked(ro, one))
        return torch.cat(lps), torch.cat(values), torch.cat(ents), list(logits)

    @torch.no_grad()
    def _reference_forward(self, ro: Rollout, with_logits: bool = False):
        """Reference logprobs [B, T] (and the tempered reference logits per chunk, if asked)."""
        # with ppo.freeze_encoder the frozen reference's encoder is the policy's: its output is reused
        reuse = self.s.freeze_encoder and not self.use_lora and ro.encoder_hidden is not None

        def one(sl):
            args = (ro.query_ids[sl], ro.query_mask[sl], ro.response_ids[sl], ro.response_mask[sl])
            with self.amp():
                if self.use_lora:
                    with self.unwrapped.lm.disable_adapter():
                        logits, _ = forward_response(self.unwrapped.lm, self.lp.is_seq2seq, *args)
                else:
                    logits, _ = forward_response(self.ref_model, self.lp.is_seq2seq, *args,
                                                 encoder_hidden=ro.encoder_hidden[sl] if reuse else None)
            logits = self._tempered(logits)
            return logprobs_from_logits(logits, ro.response_ids[sl]), logits if with_logits else None

        lps, logits = zip(*self._chunked(ro, one))
        return torch.cat(lps), list(logits)

    # -------------------------------------------------------------------------- experience
    def score(self, gen: Generation, prompts: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Judge the decoded responses: ``(scores [B], components)``. Override to score token ids."""
        out = self.reward_fn(gen.texts, prompts)
        comps = {k: v.detach().float() for k, v in getattr(out, "components", {}).items()}
        return out.total.detach().float(), comps

    def max_new_tokens(self, gen_rng: torch.Generator) -> int:
        g = self.s.generation
        if g.length_sampler is None:
            return g.max_new_tokens
        lo, hi = g.length_sampler
        return int(torch.randint(lo, hi + 1, (1,), generator=gen_rng).item())

    def make_experience(self, prompts: list[str], query_ids: torch.Tensor, query_mask: torch.Tensor,
                        max_new_tokens: int) -> Rollout:
        """Generate, score, reference logprobs, advantages. ``ro.scores`` stays ``None`` when a judge
        score is not finite on any rank: the step is then skipped on every rank."""
        ro, gen = self._generate(prompts, query_ids, query_mask, max_new_tokens)
        t0 = time.perf_counter()
        raw, ro.components = self.score(gen, prompts)
        ro.raw_scores = raw.to(query_ids.device)
        ro.timings["score_s"] = time.perf_counter() - t0
        self.phase = "rollout: agreeing on finite scores"
        if self._agree(not bool(torch.isfinite(ro.raw_scores).all()))[0]:
            return ro
        self.phase = "rollout: score normalisation"
        ro.scores = self._normalised_scores(ro.raw_scores, ro.has_eos)

        self.phase = "rollout: policy and reference logprobs"
        t0 = time.perf_counter()
        full_kl = self.s.kl.penalty == "full"
        # the exact KL over the vocabulary (kl.penalty: full) needs both models' logits
        ro.logprobs, ro.values, entropy, pol_logits = self._policy_forward_nograd(ro, with_logits=full_kl)
        ro.entropy = float(masked_mean(entropy, ro.response_mask))  # logged as policy/entropy
        ro.timings["policy_fwd_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ro.ref_logprobs, ref_logits = self._reference_forward(ro, with_logits=full_kl)
        kl_tensor = None
        if full_kl:
            kl_tensor = torch.cat([full_kl_from_logits(p, r) for p, r in zip(pol_logits, ref_logits)])
        ro.timings["reference_s"] = time.perf_counter() - t0

        scores = ro.scores
        if self.s.dense_scores:
            t0 = time.perf_counter()
            self.phase = "rollout: scoring response prefixes"
            potentials, ro.dense_rows = prefix_potentials(self.reward_fn, self.lp.tokenizer, ro, gen,
                                                          self.s.dense_scores_below)
            ro.token_scores = spread_scores(ro.scores, potentials, ro.response_mask, scale=self._score_scale())
            scores = ro.token_scores
            ro.timings["prefix_score_s"] = time.perf_counter() - t0
        ro.rewards, ro.kl, _ = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask,
                                               self.kl_ctl.value, self.s.kl.penalty, kl=kl_tensor)
        ro.advantages, ro.returns = gae(ro.rewards, ro.values, ro.response_mask, self.s.gamma, self.s.lam)
        if self.s.whiten_advantages:
            ro.advantages = masked_whiten(ro.advantages, ro.response_mask)
        return ro

    def _generate(self, prompts: list[str], query_ids: torch.Tensor, query_mask: torch.Tensor,
                  max_new_tokens: int) -> tuple[Rollout, Generation]:
        """Sample one response per prompt: the rollout (widths padded to ``length_multiple``) and the
        generation itself (unpadded, for the judges)."""
        m = self.length_multiple
        if self.lp.is_seq2seq and m > 1:  # encoder inputs: padded columns are masked out
            query_ids = pad_to_multiple(query_ids, m, self.lp.pad_id)
            query_mask = pad_to_multiple(query_mask, m, 0)
        self.phase = "rollout: generation"
        t0 = time.perf_counter()
        with self.amp():
            gen: Generation = generate_from_ids(self.lp, query_ids, query_mask, self.s.generation,
                                                max_new_tokens=max_new_tokens, model=self.unwrapped.lm)
        ro = Rollout(prompts=prompts, texts=gen.texts, query_ids=gen.query_ids, query_mask=gen.query_mask,
                     response_ids=pad_to_multiple(gen.response_ids, m, self.lp.pad_id),
                     response_mask=pad_to_multiple(gen.response_mask, m, 0),
                     encoder_hidden=gen.encoder_hidden, has_eos=gen.has_eos, length_multiple=m)
        ro.timings["generate_s"] = time.perf_counter() - t0
        return ro, gen

    def _score_scale(self) -> float:
        """The standard deviation the scores were divided by (1 without ``ppo.score_norm``)."""
        sigma = self.score_moments.std if self.s.score_norm else 1.0
        return sigma if sigma > 0 else 1.0

    def _normalised_scores(self, raw: torch.Tensor, has_eos: torch.Tensor) -> torch.Tensor:
        """Missing-EOS penalty, then running standardisation over every rank's scores, then clipping."""
        scores = raw
        if self.s.missing_eos_penalty is not None:
            scores = apply_missing_eos_penalty(scores, has_eos, self.s.missing_eos_penalty)
        if self.s.score_norm:
            self.score_moments.update(self.acc.gather(scores))
            return normalize_scores(scores, self.score_moments, clip=self.s.score_clip)
        if self.s.score_clip is not None:
            return scores.clamp(-self.s.score_clip, self.s.score_clip)
        return scores

    # ------------------------------------------------------------------------------ learning
    def learn(self, ro: Rollout) -> dict:
        """``ppo_epochs`` passes over shuffled minibatches; the mean loss statistics of the updates."""
        s = self.s
        stats: dict[str, list[float]] = {k: [] for k in (
            "policy/loss", "policy/clipfrac", "policy/approx_kl", "value/loss", "value/clipfrac")}
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step_count)
        bad_updates, early_stop = 0, None
        enc_ok = self._frozen_encoder()
        for epoch in range(s.ppo_epochs):
            perm = torch.randperm(len(ro), generator=g)
            for k, i in enumerate(range(0, len(ro), s.mini_batch_size)):
                self.phase = f"update: epoch {epoch + 1}, minibatch {k + 1}"
                result = self._update(ro.select(perm[i: i + s.mini_batch_size]), enc_ok)
                if result is None:
                    bad_updates += 1
                    continue
                for key, v in result.items():
                    stats[key].append(v)
                if s.target_approx_kl is not None and should_early_stop(result["policy/approx_kl"],
                                                                        s.target_approx_kl):
                    early_stop = f"epoch {epoch + 1}, after minibatch {k + 1}"
                    break
            if early_stop:
                break
        out = {k: (sum(v) / len(v) if v else float("nan")) for k, v in stats.items()}
        out.update({"policy/entropy": ro.entropy, "ppo/updates": len(stats["policy/loss"]),
                    "ppo/bad_updates": bad_updates, "ppo/early_stop": int(early_stop is not None)})
        if early_stop is not None and self.acc.is_main_process:
            console.print(f"[dim]step {self.step_count}: early stop at {early_stop} "
                          f"(approx KL {stats['policy/approx_kl'][-1]:.4f} > 1.5 × {s.target_approx_kl})")
        return out

    def _update(self, mb: Rollout, frozen_encoder: bool) -> dict[str, float] | None:
        """One minibatch: clipped policy and value losses, backward, clipping, AdamW step.

        Returns the minibatch's statistics, or ``None`` when the update was dropped for a non-finite loss
        (on any rank) or gradient norm. The approximate KL returned is the mean over ranks.
        """
        s = self.s
        # The generation-time encoder output is exact here only if the encoder does not train.
        enc = mb.encoder_hidden if frozen_encoder else None
        with self.amp():
            logits, values = self.model(mb.query_ids, mb.query_mask, mb.response_ids, mb.response_mask,
                                        encoder_hidden=enc)
        values = values.float()
        logp = logprobs_from_logits(self._tempered(logits), mb.response_ids)
        del logits  # the [mb, T, V] logits are not needed past the logprobs
        pg_loss, pg_stats = ppo_policy_loss(logp, mb.logprobs, mb.advantages, mb.response_mask, s.cliprange)
        vf_loss, vf_stats = ppo_value_loss(values, mb.values, mb.returns, mb.response_mask, s.cliprange_value)
        loss = pg_loss + s.vf_coef * vf_loss
        # Taken together: a non-finite loss on any rank drops the minibatch on every rank (a rank that
        # went on to backward would wait forever in DDP's all-reduce), and the early stop reads the
        # approximate KL averaged over ranks (the value logged, too).
        any_bad, approx_kl = self._agree(not bool(torch.isfinite(loss)), float(pg_stats["approx_kl"]))
        if any_bad:
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.acc.backward(loss)
        self.masters.grads_to_masters()
        # One check instead of a pass over every gradient: the total norm is finite iff every gradient
        # entry is (clipping a non-finite norm only scales grads that are dropped here). After DDP's
        # all-reduce the gradients, and so this decision, are the same on every rank.
        total_norm = self._clip_gradients()
        if total_norm is not None and not torch.isfinite(torch.as_tensor(total_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.optimizer.step()
        self.masters.masters_to_model()
        self.optimizer.zero_grad(set_to_none=True)
        return {"policy/loss": float(pg_loss.detach()), "policy/clipfrac": float(pg_stats["clipfrac"]),
                "policy/approx_kl": approx_kl, "value/loss": float(vf_loss.detach()),
                "value/clipfrac": float(vf_stats["vf_clipfrac"])}

    # ---------------------------------------------------------------------------------- step
    def step(self, prompts: list[str], query_ids: torch.Tensor, query_mask: torch.Tensor,
             max_new_tokens: int) -> dict:
        """One PPO iteration on these prompts; returns the step's statistics (the same on every rank for
        the gathered ones)."""
        t_start = time.perf_counter()
        ro = self.make_experience(prompts, query_ids, query_mask, max_new_tokens)
        self.step_count += 1
        if ro.scores is None:
            n_bad = int((~torch.isfinite(ro.raw_scores)).sum())
            self._skipped(f"{n_bad} non-finite judge scores on this process (or another's); step skipped")
            return {"step": self.step_count, "skipped": 1, "skipped_steps": self.skipped_steps}
        t0 = time.perf_counter()
        learn_stats = self.learn(ro)
        ro.timings["update_s"] = time.perf_counter() - t0
        if learn_stats["ppo/bad_updates"]:
            self._skipped(f"{learn_stats['ppo/bad_updates']} minibatch update(s) skipped for a non-finite "
                          "loss or gradient")
        self.phase = "statistics"
        stats = step_statistics(self, ro, time.perf_counter() - t_start)
        return {**stats, **learn_stats, "skipped_steps": self.skipped_steps, **component_stats(self, ro)}

    def _skipped(self, what: str) -> None:
        """Count a step that had non-finite numbers; stop the run past ``ppo.max_skipped_steps``."""
        self.skipped_steps += 1
        console.print(f"[yellow]step {self.step_count}: {what} ({self.skipped_steps} skipped so far)")
        if self.skipped_steps > self.s.max_skipped_steps:
            raise TrainingError(f"{self.skipped_steps} PPO steps skipped for non-finite numbers "
                                f"(ppo.max_skipped_steps={self.s.max_skipped_steps}); stopping")

    # ---------------------------------------------------------------------------- state
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps of the model: the trained tensors, as their float32 masters where the
        model holds them in bfloat16 or float16."""
        return {k: self._master_by_name.get(k, v).detach() for k, v in self.unwrapped.state_dict().items()
                if k.startswith("value_head.") or k in self._trainable_names}

    def state(self) -> dict:
        return {"kl_ctl": self.kl_ctl.state_dict(), "score_moments": self.score_moments.state_dict(),
                "skipped_steps": self.skipped_steps, "step_count": self.step_count}

    def load_state(self, model_state: dict, optimizer_state: dict, state: dict) -> None:
        missing = self.unwrapped.load_state_dict(model_state, strict=False)
        if missing.unexpected_keys:
            raise TrainingError(f"checkpoint has parameters this policy does not: {missing.unexpected_keys[:5]}")
        with torch.no_grad():
            for name, master in self._master_by_name.items():
                if name in model_state:
                    master.copy_(model_state[name])
        self.optimizer.load_state_dict(optimizer_state)
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.score_moments.load_state_dict(state["score_moments"])
        self.skipped_steps = int(state["skipped_steps"])
        self.step_count = int(state["step_count"])
