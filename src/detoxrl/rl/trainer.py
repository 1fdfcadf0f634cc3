"""The PPO loop. It orchestrates; the maths lives in :mod:`detoxrl.rl.core` and :mod:`detoxrl.rl.kl`.

One step, in order (CleanRL style, every detail visible):

1. the sampler picks prompts (uniform or curriculum);
2. the policy samples responses with plain sampling (top_k=0, top_p=1) so logprobs are its own;
3. the judges score the responses (composite reward), optionally penalising responses without EOS,
   then the scores are normalised and clipped;
4. old logprobs and values from the policy, reference logprobs from the frozen reference (LoRA: the same
   weights with adapters disabled; full fine-tuning: a separate frozen copy);
5. per-token KL penalty with the score on the last response token, GAE, advantage whitening;
6. ``ppo_epochs`` passes over shuffled minibatches: clipped policy loss + clipped value loss, gradient
   clipping, early stop of the epoch if approximate KL runs away;
7. the KL controller adapts, metrics go to ``metrics.jsonl`` and TensorBoard, checkpoints are written.

Data-parallel through ``accelerate launch``: each process takes its slice of the global batch,
gradients are all-reduced by DDP, statistics that steer training (KL, scores) are gathered.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Protocol

import torch
from accelerate.utils import DistributedType

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
from detoxrl.optim import MasterWeights, allocate_adam_state
from detoxrl.rl.core import (
    RunningMoments,
    apply_missing_eos_penalty,
    compute_rewards,
    entropy_from_logits,
    explained_variance,
    full_kl_from_logits,
    gae,
    logprobs_from_logits,
    masked_mean,
    masked_whiten,
    normalize_scores,
    ppo_policy_loss,
    ppo_value_loss,
    should_early_stop,
)
from detoxrl.rl.kl import make_kl_controller
from detoxrl.utils import console, round_up


# -------------------------------------------------------------------------------------------- batch
@dataclass
class Rollout:
    """Everything one PPO step knows about its batch; experience making fills it, learning reads it."""

    prompts: list[str]
    texts: list[str]
    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor = None
    ref_logprobs: torch.Tensor = None
    values: torch.Tensor = None
    scores: torch.Tensor = None  # after eos penalty, normalisation and clipping
    raw_scores: torch.Tensor = None
    rewards: torch.Tensor = None
    kl: torch.Tensor = None
    advantages: torch.Tensor = None
    returns: torch.Tensor = None
    encoder_hidden: torch.Tensor | None = None
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    has_eos: torch.Tensor | None = None  # per row, from generation (before any padding)
    length_multiple: int = 1  # response widths are kept at multiples of this (see ppo.length_multiple)

    def select(self, idx: torch.Tensor) -> "Rollout":
        """A minibatch view (tensors indexed, trimmed to the longest response in it, rounded up to a
        multiple of ``length_multiple``)."""
        t = int(self.response_mask[idx].sum(1).max().item()) or 1
        t = min(round_up(t, self.length_multiple), self.response_mask.shape[1])
        pick = lambda x: None if x is None else x[idx]  # noqa: E731
        resp = lambda x: None if x is None else x[idx, :t]  # noqa: E731
        return Rollout(
            prompts=[self.prompts[i] for i in idx.tolist()], texts=[self.texts[i] for i in idx.tolist()],
            query_ids=pick(self.query_ids), query_mask=pick(self.query_mask),
            response_ids=resp(self.response_ids), response_mask=resp(self.response_mask),
            logprobs=resp(self.logprobs), ref_logprobs=resp(self.ref_logprobs), values=resp(self.values),
            scores=pick(self.scores), raw_scores=pick(self.raw_scores), rewards=resp(self.rewards),
            kl=resp(self.kl), advantages=resp(self.advantages), returns=resp(self.returns),
            encoder_hidden=pick(self.encoder_hidden), has_eos=pick(self.has_eos),
            length_multiple=self.length_multiple,
        )


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float) -> torch.Tensor:
    """``x`` with ``value`` appended along its last dimension up to a multiple of ``multiple`` columns."""
    extra = round_up(x.shape[-1], multiple) - x.shape[-1]
    return x if extra == 0 else torch.nn.functional.pad(x, (0, extra), value=value)


class RewardOutput(Protocol):
    """What a reward returns for a batch of B responses."""

    total: torch.Tensor  # [B] float: the scalar reward of each response (higher is better)
    components: dict[str, torch.Tensor]  # named [B] terms, logged per step as reward/<name>


class Reward(Protocol):
    """``reward(responses, prompts)``: any callable with this signature rewards PPO (a composite of
    judges, a reward model, or a plain function of the text)."""

    def __call__(self, responses: list[str], prompts: list[str]) -> RewardOutput: ...


# ------------------------------------------------------------------------------------------ trainer
def store_linear_weights_bf16(model: torch.nn.Module) -> int:
    """Keep a frozen model's ``nn.Linear`` weights in bfloat16; returns how many were converted.

    Under bf16 autocast every linear layer rounds its float32 weight to bfloat16 at each call; storing
    the rounded weight gives bit-identical outputs, half the memory and no per-call cast. Embeddings,
    norms and any linear layer that shares its weight with an embedding (a tied LM head) stay float32,
    because autocast does not round those. Only for models that never train (the reference).
    """
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and id(m.weight) not in embedding_weights:
            m.weight.data = m.weight.data.to(torch.bfloat16)
            n += 1
    return n


PLAIN_DISTRIBUTED = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
"""Set-ups whose gradients live on the module's own parameters (no sharding or wrapping optimiser)."""


class PPOTrainer:
    """Holds the models, optimiser and controllers; :meth:`step` runs one PPO iteration."""

    def __init__(self, settings: PPOSettings, policy: LoadedPolicy, reward_fn: Reward, *,
                 accelerator=None, seed: int = 0, reference: LoadedPolicy | None = None,
                 reuse_encoder: bool = True):
        from accelerate import Accelerator

        self.s = settings
        self.lp = policy
        self.reward_fn = reward_fn
        self.acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.seed = seed
        self.use_lora = is_peft(policy.model)
        # Reference: the same weights with adapters disabled (LoRA), else a frozen copy.
        if self.use_lora:
            self.ref_model = None
        else:
            ref = reference.model if reference is not None else copy.deepcopy(policy.model)
            ref.eval().requires_grad_(False)
            if settings.mixed_precision == "bf16":
                store_linear_weights_bf16(ref)
            self.ref_model = ref.to(self.acc.device)
        self.module = PolicyWithValue(policy.model, policy.is_seq2seq)
        # Dropout off: logprobs at rollout time and at update time must come from the same function.
        self.module.eval()
        params = [p for p in self.module.parameters() if p.requires_grad]
        # Low-precision trainable weights (policy.dtype bfloat16/float16) get float32 masters.
        self.masters = MasterWeights(params)
        if self.masters and self.acc.distributed_type not in PLAIN_DISTRIBUTED:
            raise TrainingError(f"policy.dtype {policy.model.dtype} with {self.acc.distributed_type.value}: "
                                "load the policy in float32 and let the backend keep low-precision copies")
        by_id = {id(p): m for p, m in self.masters.pairs}
        self._master_by_name = {n: by_id[id(p)] for n, p in self.module.named_parameters() if id(p) in by_id}
        # The fused kernel updates all parameters in one call (about 3x faster than the per-tensor
        # loop that AdamW picks by default on CPU); same update rule, float32 rounding aside.
        fused = self.fused_adam_supported(self.masters.params)
        self.optimizer = torch.optim.AdamW(self.masters.params, lr=settings.learning_rate,
                                           eps=settings.adam_eps, weight_decay=0.0, fused=fused or None)
        self.model, self.optimizer = self.acc.prepare(self.module, self.optimizer)
        allocate_adam_state(self.optimizer)
        # Bucketed lengths where oneDNN would otherwise keep new kernels for every new shape.
        self.length_multiple = length_multiple(settings.length_multiple, self.unwrapped.lm,
                                               autocast=settings.mixed_precision == "bf16")
        self.kl_ctl = make_kl_controller(settings.kl)
        self.score_moments = RunningMoments()
        self.reuse_encoder = reuse_encoder
        self.skipped_steps = 0
        self.step_count = 0
        self.phase = "setup"  # what the trainer is doing, named in the error when a collective times out

    # ------------------------------------------------------------------------------ helpers
    @staticmethod
    def fused_adam_supported(params: list[torch.Tensor]) -> bool:
        """Whether torch has a fused Adam kernel for every parameter's device and dtype (CPU and CUDA do)."""
        try:
            from torch.optim.optimizer import _get_fused_kernels_supported_devices

            devices = set(_get_fused_kernels_supported_devices())
        except ImportError:  # older torch: keep the default implementation
            return False
        ok_dtypes = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
        return bool(params) and all(p.device.type in devices and p.dtype in ok_dtypes for p in params)

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

    def _clip_gradients(self) -> torch.Tensor | None:
        """Clip the gradients' total norm to ``ppo.max_grad_norm``; return the norm before clipping.

        The same as ``accelerator.clip_grad_norm_``, which multiplies every gradient by
        ``min(max_norm / (norm + 1e-6), 1)`` even when that factor is 1: here the multiply runs only when
        it changes something (same coefficient, computed the same way, so the result is bit-identical).
        Sharded or scaled set-ups (FSDP, DeepSpeed, XLA, an fp16 grad scaler) and torch < 2.6 keep
        accelerate's own path.
        """
        if (self.acc.distributed_type not in PLAIN_DISTRIBUTED or self.acc.scaler is not None
                or not hasattr(torch.nn.utils, "clip_grads_with_norm_")):  # torch < 2.6
            params = self.masters.params if self.masters else self.model.parameters()
            return self.acc.clip_grad_norm_(params, self.s.max_grad_norm)
        params = [p for p in self.masters.params if p.grad is not None]
        if not params:
            return None
        total = torch.nn.utils.get_total_norm([p.grad for p in params])
        if bool(self.s.max_grad_norm / (total + 1e-6) < 1.0):
            torch.nn.utils.clip_grads_with_norm_(params, self.s.max_grad_norm, total)
        return total

    def _frozen_encoder(self) -> bool:
        """The encoder output can be reused in the update passes when the encoder does not train.

        (Right after generation it is always reusable: the old-logprob pass sees the same weights.)
        """
        if not self.lp.is_seq2seq or not self.reuse_encoder:
            return False
        enc = self.unwrapped.lm.get_encoder()
        return not any(p.requires_grad for p in enc.parameters())

    @torch.no_grad()
    def _policy_forward_nograd(self, ro: Rollout, mb: int):
        logps, values, ents = [], [], []
        for i in range(0, len(ro.prompts), mb):
            sl = slice(i, i + mb)
            with self.amp():
                logits, v = self.unwrapped(ro.query_ids[sl], ro.query_mask[sl], ro.response_ids[sl],
                                           ro.response_mask[sl],
                                           encoder_hidden=ro.encoder_hidden[sl] if ro.encoder_hidden is not None else None)
            v = v.float()
            logits = self._tempered(logits)
            logps.append(logprobs_from_logits(logits, ro.response_ids[sl]))
            values.append(v)
            ents.append(entropy_from_logits(logits))
        return torch.cat(logps), torch.cat(values), torch.cat(ents)

    @torch.no_grad()
    def _reference_forward(self, ro: Rollout, mb: int, want_logits: bool):
        out_lp, out_logits = [], []
        for i in range(0, len(ro.prompts), mb):
            sl = slice(i, i + mb)
            args = (ro.query_ids[sl], ro.query_mask[sl], ro.response_ids[sl], ro.response_mask[sl])
            with self.amp():
                if self.use_lora:
                    with self.unwrapped.lm.disable_adapter():
                        logits, _ = forward_response(self.unwrapped.lm, self.lp.is_seq2seq, *args)
                else:
                    logits, _ = forward_response(self.ref_model, self.lp.is_seq2seq, *args)
            logits = self._tempered(logits)
            out_lp.append(logprobs_from_logits(logits, ro.response_ids[sl]))
            if want_logits:
                out_logits.append(logits)
        return torch.cat(out_lp), (out_logits if want_logits else None)

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
                        max_new_tokens: int, timings: dict) -> Rollout:
        s = self.s
        m = self.length_multiple
        if self.lp.is_seq2seq and m > 1:  # encoder inputs: padded columns are masked out
            query_ids = pad_to_multiple(query_ids, m, self.lp.pad_id)
            query_mask = pad_to_multiple(query_mask, m, 0)
        self.phase = "rollout: generation"
        t0 = time.perf_counter()
        with self.amp():
            gen: Generation = generate_from_ids(self.lp, query_ids, query_mask, s.generation,
                                                max_new_tokens=max_new_tokens, model=self.unwrapped.lm)
        timings["generate_s"] = time.perf_counter() - t0
        ro = Rollout(prompts=prompts, texts=gen.texts, query_ids=gen.query_ids, query_mask=gen.query_mask,
                     response_ids=pad_to_multiple(gen.response_ids, m, self.lp.pad_id),
                     response_mask=pad_to_multiple(gen.response_mask, m, 0),
                     encoder_hidden=gen.encoder_hidden, has_eos=gen.has_eos, length_multiple=m)

        t0 = time.perf_counter()
        raw, ro.components = self.score(gen, prompts)
        raw = raw.to(query_ids.device)
        timings["score_s"] = time.perf_counter() - t0
        ro.raw_scores = raw
        self.phase = "rollout: agreeing on finite scores"
        any_bad, _ = self._agree(not bool(torch.isfinite(raw).all()))
        if any_bad:
            return ro  # the caller skips this step, on every rank
        self.phase = "rollout: score normalisation"
        scores = raw
        if s.missing_eos_penalty is not None:
            scores = apply_missing_eos_penalty(scores, gen.has_eos, s.missing_eos_penalty)
        if s.score_norm:
            all_scores = self.acc.gather(scores)
            self.score_moments.update(all_scores)
            scores = normalize_scores(scores, self.score_moments, clip=s.score_clip)
        elif s.score_clip is not None:
            scores = scores.clamp(-s.score_clip, s.score_clip)
        ro.scores = scores

        self.phase = "rollout: policy and reference logprobs"
        t0 = time.perf_counter()
        mb = s.mini_batch_size
        ro.logprobs, ro.values, entropy = self._policy_forward_nograd(ro, mb)
        # Logged as policy/entropy: the rollout policy's entropy, from this pass (no second softmax later).
        self._rollout_entropy = float(masked_mean(entropy, ro.response_mask))
        timings["policy_fwd_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        want_full = s.kl.penalty == "full"
        ro.ref_logprobs, ref_logits = self._reference_forward(ro, mb, want_full)
        kl_tensor = None
        if want_full:
            with torch.no_grad():
                pol_logits = []
                for i in range(0, len(prompts), mb):
                    sl = slice(i, i + mb)
                    with self.amp():
                        lg, _ = self.unwrapped(ro.query_ids[sl], ro.query_mask[sl], ro.response_ids[sl], ro.response_mask[sl])
                    pol_logits.append(self._tempered(lg))
                kl_tensor = torch.cat([full_kl_from_logits(p, r) for p, r in zip(pol_logits, ref_logits)])
        timings["reference_s"] = time.perf_counter() - t0

        ro.rewards, ro.kl, _ = compute_rewards(ro.scores, ro.logprobs, ro.ref_logprobs, ro.response_mask,
                                               self.kl_ctl.value, s.kl.penalty, kl=kl_tensor)
        ro.advantages, ro.returns = gae(ro.rewards, ro.values, ro.response_mask, s.gamma, s.lam)
        if s.whiten_advantages:
            ro.advantages = masked_whiten(ro.advantages, ro.response_mask)
        return ro

    # ------------------------------------------------------------------------------ learning
    def learn(self, ro: Rollout) -> dict:
        s = self.s
        n = len(ro.prompts)
        stats: dict[str, list[float]] = {k: [] for k in (
            "policy/loss", "policy/clipfrac", "policy/approx_kl", "value/loss", "value/clipfrac")}
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step_count)
        bad_updates = 0
        early_stop = None
        frozen_encoder = self._frozen_encoder()
        for epoch in range(s.ppo_epochs):
            perm = torch.randperm(n, generator=g)
            stop = False
            for i in range(0, n, s.mini_batch_size):
                self.phase = f"update: epoch {epoch + 1}, minibatch {i // s.mini_batch_size + 1}"
                mbro = ro.select(perm[i: i + s.mini_batch_size])
                # The generation-time encoder output is exact here only if the encoder does not train.
                enc = mbro.encoder_hidden if frozen_encoder else None
                with self.amp():
                    logits, values = self.model(mbro.query_ids, mbro.query_mask, mbro.response_ids,
                                                mbro.response_mask, encoder_hidden=enc)
                values = values.float()
                logp = logprobs_from_logits(self._tempered(logits), mbro.response_ids)
                del logits  # the [mb, T, V] logits are not needed past the logprobs
                pg_loss, pg_stats = ppo_policy_loss(logp, mbro.logprobs, mbro.advantages, mbro.response_mask,
                                                    s.cliprange)
                vf_loss, vf_stats = ppo_value_loss(values, mbro.values, mbro.returns, mbro.response_mask,
                                                   s.cliprange_value)
                loss = pg_loss + s.vf_coef * vf_loss
                # Taken together: a non-finite loss on any rank skips the minibatch on every rank (a rank
                # that went on to backward would wait forever in DDP's all-reduce), and the early stop
                # reads the approximate KL averaged over ranks (the value logged, too).
                any_bad, approx_kl = self._agree(not bool(torch.isfinite(loss)), float(pg_stats["approx_kl"]))
                if any_bad:
                    bad_updates += 1
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                self.acc.backward(loss)
                self.masters.grads_to_masters()
                # One check instead of a pass over every gradient: the total norm is finite iff every
                # gradient entry is (clipping a non-finite norm only scales grads that are dropped here).
                total_norm = self._clip_gradients()
                if total_norm is not None and not torch.isfinite(torch.as_tensor(total_norm)):
                    bad_updates += 1
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                self.optimizer.step()
                self.masters.masters_to_model()
                self.optimizer.zero_grad(set_to_none=True)
                stats["policy/loss"].append(float(pg_loss.detach()))
                stats["policy/clipfrac"].append(float(pg_stats["clipfrac"]))
                stats["policy/approx_kl"].append(approx_kl)
                stats["value/loss"].append(float(vf_loss.detach()))
                stats["value/clipfrac"].append(float(vf_stats["vf_clipfrac"]))
                if s.target_approx_kl is not None and should_early_stop(approx_kl, s.target_approx_kl):
                    early_stop = f"epoch {epoch + 1}, after minibatch {i // s.mini_batch_size + 1}"
                    stop = True
                    break
            if stop:
                break
        out = {k: (sum(v) / len(v) if v else float("nan")) for k, v in stats.items()}
        out["policy/entropy"] = getattr(self, "_rollout_entropy", float("nan"))
        out["ppo/updates"] = len(stats["policy/loss"])
        out["ppo/bad_updates"] = bad_updates
        out["ppo/early_stop"] = 0 if early_stop is None else 1
        if early_stop is not None and self.acc.is_main_process:
            console.print(f"[dim]step {self.step_count}: early stop at {early_stop} "
                          f"(approx KL {stats['policy/approx_kl'][-1]:.4f} > 1.5 × {s.target_approx_kl})")
        return out

    # ---------------------------------------------------------------------------------- step
    def step(self, prompts: list[str], query_ids: torch.Tensor, query_mask: torch.Tensor,
             max_new_tokens: int) -> dict:
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        ro = self.make_experience(prompts, query_ids, query_mask, max_new_tokens, timings)
        self.step_count += 1
        if ro.scores is None:
            self.skipped_steps += 1
            n_bad = int((~torch.isfinite(ro.raw_scores)).sum())
            console.print(f"[yellow]step {self.step_count}: {n_bad} non-finite judge scores; step skipped "
                          f"({self.skipped_steps} skipped so far)")
            if self.skipped_steps > self.s.max_skipped_steps:
                raise TrainingError(f"{self.skipped_steps} PPO steps skipped for non-finite numbers "
                                    f"(ppo.max_skipped_steps={self.s.max_skipped_steps}); stopping")
            return {"step": self.step_count, "skipped": 1, "skipped_steps": self.skipped_steps}
        t0 = time.perf_counter()
        learn_stats = self.learn(ro)
        timings["update_s"] = time.perf_counter() - t0
        if learn_stats["ppo/bad_updates"]:
            self.skipped_steps += 1
            console.print(f"[yellow]step {self.step_count}: {learn_stats['ppo/bad_updates']} minibatch "
                          "update(s) skipped for a non-finite loss or gradient")
            if self.skipped_steps > self.s.max_skipped_steps:
                raise TrainingError(f"{self.skipped_steps} PPO steps had non-finite losses "
                                    f"(ppo.max_skipped_steps={self.s.max_skipped_steps}); stopping")

        self.phase = "statistics"
        mask = ro.response_mask
        seq_kl = (ro.kl * mask).sum(1)
        mean_kl = self._gather_mean(seq_kl)
        self.kl_ctl.update(mean_kl, len(prompts) * self.acc.num_processes)
        step_s = time.perf_counter() - t_start
        n_tokens = float(mask.sum())
        stats = {
            "step": self.step_count,
            "reward/mean": self._gather_mean(ro.raw_scores),
            "reward/std": float(self.acc.gather(ro.raw_scores).std()) if len(prompts) > 1 else 0.0,
            "reward/normalized_mean": self._gather_mean(ro.scores),
            "kl/mean": mean_kl,
            "kl/coef": float(self.kl_ctl.value),
            "reward/non_score": self._gather_mean((-self.kl_ctl.value * ro.kl * mask).sum(1)),
            "value/explained_variance": float(explained_variance(ro.values, ro.returns, mask)),
            "value/mean": float(masked_mean(ro.values, mask)),
            "returns/mean": float(masked_mean(ro.returns, mask)),
            "response/length": self._gather_mean(mask.sum(1)),
            "response/eos_share": self._gather_mean(ro.has_eos.float()),
            "perf/step_s": step_s,
            "perf/tokens_per_s": n_tokens * self.acc.num_processes / step_s,
            **{f"perf/{k}": v for k, v in timings.items()},
            **learn_stats,
            "skipped_steps": self.skipped_steps,
        }
        for name, comp in sorted(ro.components.items()):  # the same gathers in the same order on every rank
            # constitution terms are logged under their own prefix (the report plots them per principle)
            key = name if name.startswith("constitution/") else f"reward/{name}"
            stats[key] = self._gather_mean(comp)
        return stats

    # ---------------------------------------------------------------------------- state
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps of the model: the trained tensors, as their float32 masters where the
        model holds them in bfloat16 or float16."""
        return {k: self._master_by_name.get(k, v).detach() for k, v in self.unwrapped.state_dict().items()
                if k.startswith("value_head.") or self._is_trainable(k)}

    def _is_trainable(self, key: str) -> bool:
        names = getattr(self, "_trainable_names", None)
        if names is None:
            names = {n for n, p in self.unwrapped.named_parameters() if p.requires_grad}
            self._trainable_names = names
        return key in names

    def state(self) -> dict:
        return {"kl_ctl": self.kl_ctl.state_dict(), "score_moments": self.score_moments.state_dict(),
                "skipped_steps": self.skipped_steps, "step_count": self.step_count}

    def load_state(self, model_state: dict, optimizer_state: dict, state: dict) -> None:
        missing = self.unwrapped.load_state_dict(model_state, strict=False)
        unexpected = [k for k in missing.unexpected_keys]
        if unexpected:
            raise TrainingError(f"checkpoint has parameters this policy does not: {unexpected[:5]}")
        with torch.no_grad():
            for name, master in self._master_by_name.items():
                if name in model_state:
                    master.copy_(model_state[name])
        self.optimizer.load_state_dict(optimizer_state)
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.score_moments.load_state_dict(state["score_moments"])
        self.skipped_steps = int(state["skipped_steps"])
        self.step_count = int(state["step_count"])
