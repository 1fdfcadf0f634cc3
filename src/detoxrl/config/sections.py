"""The settings of each section of a run's config: one pydantic model per YAML section.

Every model forbids unknown keys and validates on assignment; a field's docstring says what the key
does. :class:`detoxrl.config.run_config.Config` puts the sections together. The judge, reward and
reward-model sections live in :mod:`detoxrl.config.rewards`, the testbed's in :mod:`detoxrl.config.testbed`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from detoxrl.config.base import CRITIQUE_REQUEST, DIMENSIONS, REVISION_REQUEST, _Strict, require_placeholders  # noqa: F401 - DIMENSIONS importable from here as before
from detoxrl.config.redteam import RedTeamAttackSettings
from detoxrl.config.rewards import (  # noqa: F401 - the reward sections, importable from here as before
    JudgeSettings,
    RewardModelSettings,
    RewardSettings,
    SeverityTier,
)
from detoxrl.config.testbed import (  # noqa: F401 - the testbed section, importable from here as before
    SeverityMix,
    TestbedSettings,
    TinyJudgeSettings,
    TinyT5Settings,
)


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------
class LoraSettings(_Strict):
    enabled: bool = False
    r: int = Field(32, gt=0)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q", "v"])


class ModelSettings(_Strict):
    """A Hugging Face model: a hub id or a local folder."""

    name_or_path: str
    kind: Literal["auto", "seq2seq", "causal"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """The dtype the weights are loaded, trained and saved in. ``auto``: ``bfloat16`` where the device
    computes it natively (a GPU from Ampere on; a CPU with AVX-512 bf16 or AMX), ``float32`` elsewhere, for
    instance on an AVX2 CPU, which emulates bfloat16 matmuls about a hundred times slower than float32
    (see ``detoxrl.models.precision``). Training bfloat16 or float16 weights (SFT, PPO) keeps float32
    master copies in the optimiser (``detoxrl.optim.MasterWeights``), so updates smaller than the
    low-precision spacing are not lost; checkpoints keep the masters."""
    revision: str | None = None
    trust_remote_code: bool = False
    fused_activations: bool = True
    """Run tanh-approximated GELUs (``gelu_new``, ``gelu_fast``: T5, GPT-2) as torch's one-pass kernel
    instead of transformers' elementwise operations (the same function; fewer tensors kept for the
    backward pass). The saved model is unchanged."""
    attn_implementation: str = "auto"
    """transformers' attention kernel (``eager``, ``sdpa``, ...). ``auto``: ``eager`` for models with a
    learned relative position bias (T5, mT5, UMT5), whose biased attentions ``sdpa`` cannot fuse;
    transformers' own choice for every other model."""
    lora: LoraSettings = Field(default_factory=LoraSettings)


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
class DataSettings(_Strict):
    """Where prompts (and reference summaries) come from.

    ``source`` is ``testbed`` (the embedded default built by ``prepare``), a hub dataset id
    (``knkarthick/dialogsum``) or a local file/folder. ``format`` says how to read it.
    """

    source: str = "testbed"
    format: Literal["auto", "dialogsum", "jsonl", "csv", "parquet", "hub"] = "auto"
    train_split: str = "train"
    eval_split: str = "test"
    text_column: str = "dialogue"
    reference_columns: list[str] = Field(default_factory=lambda: ["summary"])
    id_column: str | None = None
    prompt_template: str = "Summarize the following conversation.\n\n{text}\n\nSummary:"
    min_text_chars: int | None = Field(None, ge=0)
    """Drop examples whose text (``text_column``, before the template) has fewer characters. The seed
    recipe keeps dialogues with 200 < len ≤ 1000 characters: ``min_text_chars: 201, max_text_chars: 1000``."""
    max_text_chars: int | None = Field(None, gt=0)
    """Drop examples whose text has more characters (applied before the token filters below)."""
    min_prompt_tokens: int = Field(1, ge=0)
    max_prompt_tokens: int = Field(512, gt=0)
    truncate: bool = False
    """Truncate prompts longer than ``max_prompt_tokens`` instead of dropping them."""
    skip_bad_rows: bool = False
    max_train_rows: int | None = Field(None, gt=0)
    max_eval_rows: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> DataSettings:
        if self.min_prompt_tokens > self.max_prompt_tokens:
            raise ValueError("min_prompt_tokens must not exceed max_prompt_tokens")
        if None not in (self.min_text_chars, self.max_text_chars) and self.min_text_chars > self.max_text_chars:
            raise ValueError("min_text_chars must not exceed max_text_chars")
        if "{text}" not in self.prompt_template:
            raise ValueError("prompt_template must contain the placeholder {text}")
        return self


# --------------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------------
class GenerationSettings(_Strict):
    max_new_tokens: int = Field(48, gt=0)
    min_new_tokens: int = Field(0, ge=0)
    length_sampler: tuple[int, int] | None = None
    """If set, ``max_new_tokens`` is drawn uniformly from [low, high] for each batch (seed recipe)."""
    do_sample: bool = True
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    kv_cache: Literal["auto", "dynamic", "static"] = "auto"
    """The decoder's key-value cache: ``dynamic`` grows by one position per token, ``static`` is allocated
    at its full length once. ``auto``: static for an encoder-decoder model that computes in bfloat16 or
    float16 on the CPU, where oneDNN builds and keeps a matmul kernel for every attention length a
    growing cache produces; dynamic otherwise (see ``detoxrl.models.cpu_shapes.static_kv_cache``)."""

    @model_validator(mode="after")
    def _check(self) -> GenerationSettings:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError("min_new_tokens must not exceed max_new_tokens")
        if self.length_sampler is not None:
            lo, hi = self.length_sampler
            if not 0 < lo <= hi:
                raise ValueError("length_sampler must be [low, high] with 0 < low <= high")
        return self


# --------------------------------------------------------------------------------------------------
# sft
# --------------------------------------------------------------------------------------------------
class SFTTaskSettings(_Strict):
    """Critique and revision examples for SFT, made from a file of summaries labelled per principle
    (the testbed writes ``data/summary_labels_{train,test}.jsonl``; format in
    ``detoxrl.constitution.tasks``). Off by default: an instruction-tuned model (FLAN-T5) answers the
    critique and revision requests of ``constitution`` zero-shot."""

    critique_share: float = Field(0.0, ge=0)
    """Critique examples per (prompt, target) pair: 0.2 adds one critique example for every five pairs,
    half of them with the answer yes."""
    revision_share: float = Field(0.0, ge=0)
    """Revision examples (a violating summary rewritten into the clean one) per (prompt, target) pair."""
    labels_file: str = "{run_dir}/testbed/data/summary_labels_train.jsonl"
    eval_labels_file: str = "{run_dir}/testbed/data/summary_labels_test.jsonl"
    """The held-out labelled summaries ``detoxrl critique-eval`` scores the self-critique on."""
    principles: dict[str, str] = Field(default_factory=dict)
    """Principle id (of ``constitution.path``) → the label of the labels file that is its ground truth,
    e.g. ``{no-insults: insult}``; the principles with ground truth get critique and revision examples."""

    @property
    def enabled(self) -> bool:
        return (self.critique_share > 0 or self.revision_share > 0) and bool(self.principles)


class SFTSettings(_Strict):
    enabled: bool = True
    base_model: ModelSettings | None = None
    """The model to fine-tune; on the testbed the untrained tiny T5 that ``prepare`` builds."""
    train_file: str | None = None
    """jsonl of (prompt, target) pairs; default: the data section's train split with its first reference."""
    target_column: str = "summary"
    output_dir: str = "{run_dir}/sft"
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(32, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    max_target_tokens: int = Field(64, gt=0)
    eval_rows: int = Field(200, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    length_multiple: int | None = Field(None, gt=0)
    """Pad each batch to a multiple of this many tokens (masked, label -100). ``None``: 16 for an
    encoder-decoder base model stored in bfloat16 or float16 on the CPU (see ``ppo.length_multiple``),
    1 otherwise."""
    group_by_length: bool = False
    """Batch rows of about the same length (Hugging Face's ``group_by_length``): less padding, so less
    compute per epoch; the batches stay in random order (``stages.sft.length_grouped_batches``)."""
    tasks: SFTTaskSettings = Field(default_factory=SFTTaskSettings)
    """Multi-task SFT: critique and revision examples beside the (prompt, target) pairs (testbed)."""
    seed: int | None = None


# --------------------------------------------------------------------------------------------------
# ppo
# --------------------------------------------------------------------------------------------------
class KLSettings(_Strict):
    penalty: Literal["kl", "abs", "mse", "full"] = "kl"
    init_coef: float = Field(0.2, ge=0)
    adaptive: bool = True
    target: float = Field(6.0, gt=0)
    horizon: int = Field(10_000, gt=0)


class PPOSettings(_Strict):
    steps: int = Field(100, gt=0)
    batch_size: int = Field(32, gt=0)
    mini_batch_size: int = Field(8, gt=0)
    ppo_epochs: int = Field(4, gt=0)
    learning_rate: float = Field(1.41e-5, gt=0)
    adam_eps: float = Field(1e-8, gt=0)
    kl: KLSettings = Field(default_factory=KLSettings)
    gamma: float = Field(1.0, ge=0, le=1)
    lam: float = Field(0.95, ge=0, le=1)
    cliprange: float = Field(0.2, gt=0)
    cliprange_value: float = Field(0.2, gt=0)
    vf_coef: float = Field(0.1, ge=0)
    whiten_advantages: bool = True
    max_grad_norm: float = Field(1.0, gt=0)
    score_norm: bool = True
    """Standardise judge scores with running mean/std before the KL penalty is added."""
    score_clip: float | None = Field(None, gt=0)
    freeze_encoder: bool = False
    """Encoder-decoder policies: the encoder (with the embeddings it shares with the decoder, and so a tied
    LM head) keeps the starting model's weights, and its output, computed once per batch at generation, is
    reused by every update pass and by the reference (whose encoder is the same). On the testbed's T5 the
    encoder is about 45% of a pass's arithmetic. Only the decoder, an untied LM head and the value head
    train."""
    dense_scores: bool = False
    """Score every prefix of a response too, and credit each token with the change in the judges' score it
    brought (``detoxrl.rl.core.spread_scores``): the insult gets the penalty, not every token of its
    summary equally. A response's total reward stays the same. Costs one reward call per response token
    of the responses it applies to (``dense_scores_below``)."""
    dense_scores_below: float | None = None
    """With ``dense_scores``: only responses whose reward (raw, before normalisation) is below this get
    their prefixes scored; the others keep their score on the last token, as without. ``null``: every
    response. A clean summary's prefixes score about as it does, so leaving those out saves most of the
    cost."""
    missing_eos_penalty: float | None = Field(None, ge=0)
    target_approx_kl: float | None = Field(None, gt=0)
    """Stop an epoch's remaining minibatches when approximate KL exceeds 1.5 × this."""
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"
    """``bf16``: run generation and every forward pass under bfloat16 autocast (fp32 master weights,
    fp32 logprobs); numerics differ slightly from ``no``. ``auto``: ``bf16`` where the device computes
    bfloat16 natively and the policy's weights are float32, ``no`` elsewhere (see ``policy.dtype``)."""
    length_multiple: int | None = Field(None, gt=0)
    """Pad each batch's prompts (encoder-decoder models; a decoder-only prompt's positions would move)
    and each minibatch's responses to a multiple of this many tokens (masked, so the numbers stay the
    same up to float rounding). ``None``: 16 for an encoder-decoder policy that computes in bfloat16 or
    float16 on the CPU, where oneDNN builds and keeps kernels for every matmul shape it meets, and 1
    (no padding) otherwise."""
    output_dir: str = "{run_dir}/policy"
    work_dir: str = "{run_dir}/ppo"
    """Where the run keeps ``metrics.jsonl``, checkpoints, warnings and the curriculum's ``difficulty.json``."""
    checkpoint_every: int = Field(0, ge=0)
    """Write a checkpoint every N steps (0: only at the end)."""
    keep_checkpoints: int = Field(2, gt=0)
    max_skipped_steps: int = Field(5, ge=0)
    collective_timeout_s: int = Field(600, gt=0)
    """Data-parallel runs: seconds a rank waits in a collective (gather, all-reduce) for the others before
    the run fails with an error naming the step and the phase, instead of hanging."""
    probe_every: int = Field(0, ge=0)
    """Every N steps (Hugging Face's Trainer calls this ``eval_steps``), the current policy answers a fixed
    probe of held-out prompts as the eval stage would (``eval.generation``, ``probe_sample``) and the answers are
    scored by the reward's judges, by the held-out judges (``eval.extra_judges``) and by ROUGE-L against
    the references; the figures are logged as ``probe/*`` keys of ``metrics.jsonl`` on that step, and a
    warning is recorded when they diverge (``probe_window``). Only the main process probes, with its random
    state set aside, so probing does not change what is trained. 0: off."""
    probe_prompts: int = Field(64, gt=0)
    """How many prompts the probe holds: drawn once, with ``eval.seed``, from the prompts the eval stage uses
    (the first ``eval.n_prompts`` of ``data.eval_split`` that pass the prompt filters; from more of the split
    when this is larger), so the probe is a subset of the final evaluation's prompts."""
    probe_sample: bool = True
    """The probe decodes with ``eval.generation`` as it is (sampled there, with the eval's seed: the same
    draws at every probe), so its rates estimate the final evaluation's on a subset. ``false``: greedy
    (``do_sample`` off, the eval's lengths), steadier from probe to probe but blind to the probability the
    policy still puts on toxic words: on the testbed it read 0% from step 25 while sampling gave 2-4%."""
    probe_window: int = Field(3, ge=2)
    """The reward-hacking check compares the first and the last of the last N probes: a warning when the
    reward improved while the held-out toxic rate rose or ROUGE-L fell (the rule and its tolerances:
    ``detoxrl.evaluation.probe.reward_hacking``)."""
    stop_at_reward: float | None = None
    """Stop early, and save as at the end, when the mean of ``reward/mean`` over the last ``stop_window``
    steps reaches this value (``≥``); ``null``: run all ``steps``. ``steps`` stays the upper bound."""
    stop_window: int = Field(10, gt=0)
    """Steps in the moving mean that ``stop_at_reward`` compares (it waits until that many steps exist)."""
    stop_at_probe_toxic_rate: float | None = Field(None, ge=0, le=1)
    """Stop early, and save as at the end, when a probe's held-out toxic rate (``probe/toxic_rate_heldout``:
    the share of probe responses any of ``eval.extra_judges`` flags) is at most this; needs
    ``probe_every`` > 0 and at least one of ``eval.extra_judges``. ``null``: no such stop."""
    redteam_prompts: str | None = None
    """A red-team ``cases.jsonl`` (``detoxrl redteam``): its distinct successful dialogues join the training
    prompts; with the curriculum on they are its hardest (harmful) tier, brought in last."""
    redteam_share: float | None = Field(None, gt=0, lt=1)
    """With ``redteam_prompts``: this share of every batch is drawn from them (each once per pass over them),
    the rest from the other prompts by the usual sampler, from the first step. ``null``: they are ordinary
    prompts of the pool (a few percent of it), brought in when the curriculum opens the harmful tier.
    ``redteam.rounds`` sets it to ``redteam.round_share``."""
    seed: int | None = None

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, v):
        return "no" if v is False else v  # YAML reads a bare `no` as false

    @model_validator(mode="after")
    def _check(self) -> PPOSettings:
        if self.batch_size % self.mini_batch_size:
            raise ValueError("batch_size must be a multiple of mini_batch_size")
        if self.redteam_share is not None and not self.redteam_prompts:
            raise ValueError("ppo.redteam_share needs ppo.redteam_prompts (a red-team cases.jsonl to draw from)")
        if self.stop_at_probe_toxic_rate is not None and self.probe_every == 0:
            raise ValueError("ppo.stop_at_probe_toxic_rate needs probes: set ppo.probe_every to a number of "
                             "steps (or ppo.stop_at_probe_toxic_rate to null)")
        return self


# --------------------------------------------------------------------------------------------------
# curriculum and constitution
# --------------------------------------------------------------------------------------------------
class CurriculumSettings(_Strict):
    enabled: bool = False
    difficulty: Literal["judge", "base_reward", "column", "tier"] = "judge"
    """``tier``: level 0 clean, 1 ambiguous, 2 harmful (mild), 3 harmful severe (``detoxrl.curriculum.tiers``)."""
    difficulty_column: str | None = None
    pacing: Literal["linear", "sqrt", "step", "self_paced", "tiers"] = "sqrt"
    """``tiers``: one stage per difficulty level present, each opening the next level (evenly up to ``full_at``)."""
    tier_column: str = "tier"
    """Column holding each prompt's tier: clean, ambiguous or harmful"""
    grade_column: str = "grade"
    """Column holding the severity inside the harmful tier: mild, severe (or none)."""
    tier_thresholds: list[float] = Field(default_factory=lambda: [0.1, 0.5])
    """Without the tier column: judges' toxicity of the prompt below the first is clean, below the second ambiguous."""
    severe_at: float = Field(0.8, gt=0, le=1)
    """Without the grade column: a harmful prompt is severe when the judges' severity of it is at least this."""
    start_competence: float = Field(0.2, gt=0, le=1)
    full_at: float = Field(0.8, gt=0, le=1)
    """Fraction of training after which all prompts are available."""
    stages: int = Field(3, gt=0)
    reward_threshold: float = 0.0
    window: int = Field(5, gt=0)

    @field_validator("tier_thresholds")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or not 0 < v[0] < v[1] < 1:
            raise ValueError(f"curriculum.tier_thresholds must be two increasing values in (0, 1), got {v}")
        return v


class SLCAISettings(_Strict):
    """Supervised Constitutional AI: the SFT policy samples responses to training prompts, critiques each
    against each principle, revises the violating ones, and is fine-tuned on the revisions whose own
    critique passes (``detoxrl.stages.constitution``). PPO then starts from the result."""

    enabled: bool = True
    principles: list[str] | None = None
    """Principle ids to self-critique (default: every principle of ``constitution.path``)."""
    n_prompts: int = Field(2000, gt=0)
    """Training prompts sampled (seeded) from ``data.train_split``; one response each."""
    threshold: float = Field(0.5, gt=0, lt=1)
    """A response violates a principle when its self-critique's P(yes) is at least this."""
    revision: Literal["policy", "rewrite"] = "policy"
    """``policy``: the policy answers each violated principle's revision request in turn (greedy);
    ``rewrite``: the rule-based rewrite of ``detoxrl.constitution.revise`` (the principles' checks)."""
    include_compliant: bool = False
    """Also fine-tune on the responses whose critique passed, unchanged (keeps the policy's other answers)."""
    max_new_tokens: int | None = Field(None, gt=0)
    """Length of responses and revisions (default: ``ppo.generation.max_new_tokens``)."""
    batch_size: int = Field(64, gt=0)
    """Prompts per generation and critique batch."""
    epochs: float = Field(2.0, gt=0)
    train_batch_size: int = Field(16, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    output_dir: str = "{run_dir}/sl-cai"
    seed: int | None = None


class ConstitutionSettings(_Strict):
    """Principles checked on every PPO response (penalties, revisions); see ``detoxrl.constitution``."""

    enabled: bool = False
    path: str = "configs/constitution.yaml"
    """The constitution file; ``configs/<name>.yaml`` or a bare name also finds the packaged ones."""
    revision: Literal["none", "policy", "resample", "rewrite"] = "rewrite"
    max_resamples: int = Field(2, ge=0)
    violation_weight: float = Field(1.0, ge=0)
    """Multiplies every principle's weight: ``reward −= violation_weight · Σ_p w_p · violated_p``."""
    critic_model: str | None = None
    """Model that answers critique and revision requests and resamples (default: the policy)."""
    max_new_tokens: int | None = Field(None, gt=0)
    """Length of policy revisions and resamples (default: ``ppo.generation.max_new_tokens``)."""
    record: bool = True
    """During PPO, keep (original, revised) pairs as preference and SFT data in ``output_dir``."""
    output_dir: str = "{run_dir}/constitution"
    critique_request: str = CRITIQUE_REQUEST
    """The self-critique request (SFT tasks, the ``constitution`` stage, ``critique-eval``, the
    ``self_critique`` judge): ``{principle}`` (the principle in words), ``{response}``, ``{dialogue}``;
    the dialogue's part is left out when there is no dialogue (``detoxrl.constitution.prompts``)."""
    revision_request: str = REVISION_REQUEST
    """The self-revision request, with the same placeholders."""
    sl: SLCAISettings = Field(default_factory=SLCAISettings)
    """The ``constitution`` stage (SL-CAI), which ``detoxrl run`` runs when ``enabled`` here and there."""

    @field_validator("critique_request", "revision_request")
    @classmethod
    def _request(cls, v: str) -> str:
        return require_placeholders(v, "{principle}", "{response}")


# --------------------------------------------------------------------------------------------------
# evaluation and report
# --------------------------------------------------------------------------------------------------
class EvalSettings(_Strict):
    n_prompts: int = Field(1000, gt=0)
    samples: int = Field(1, gt=0)
    batch_size: int = Field(64, gt=0)
    generation: GenerationSettings = Field(
        default_factory=lambda: GenerationSettings(do_sample=False)
    )
    extra_judges: list[JudgeSettings] = Field(default_factory=list)
    """Judges the policy was not trained against, reported beside the reward judges."""
    bootstrap: int = Field(1000, gt=0)
    redteam_replay: str | None = None
    """A red-team ``cases.jsonl`` found against the reference: its prompts are answered by the reference
    and the trained policy, and the paired attack success rates go to ``eval.json``'s ``redteam_replay``."""
    redteam_attack: RedTeamAttackSettings | None = None
    """A fresh (adaptive) attack in ``eval``: ``{budget, methods}``, the ``redteam`` stage's search run against
    the trained policy and, with the same budget and seed, against the reference; attack success rates,
    distinct-2 and self-BLEU go to ``eval.json``'s ``redteam_attack``. ``null``: none."""
    table_examples: int = Field(5, ge=0)
    seed: int | None = None


class ReportSettings(_Strict):
    enabled: bool = True
    examples: int = Field(5, ge=0)
