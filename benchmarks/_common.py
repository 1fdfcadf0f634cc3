"""What both sides of the PPO benchmark share: sizes, the tiny T5, prompts, the reward, memory and FLOPs.

This module imports only the standard library and torch at the top (transformers and tokenizers inside
the functions that need them), so that it loads unchanged in the project's environment and in the legacy
environment (``.bench-venv``), and it never imports detoxrl or trl.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
"""T5 conventions: ``<pad>`` = 0 (also the decoder start token), ``</s>`` = 1, ``<unk>`` = 2."""
FIRST_WORD_ID = 3
"""Prompt bodies draw their ids from ``[FIRST_WORD_ID, vocab)``: no pad, EOS or unknown inside."""


# ------------------------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapters as the seed recipe adds them: rank ``r``, ``alpha``, dropout, on modules named ``q`` and ``v``.

    peft matches a target by the module name's last part, so in a T5 ``q``/``v`` are the encoder's
    self-attention projections and, in the decoder, both the self-attention and the cross-attention ones.
    """

    r: int = 32
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q", "v")


@dataclass(frozen=True)
class ModelSize:
    """A T5 with FLAN-T5's gated-GELU feed-forward, and how PPO trains it (``lora``: None = full fine-tuning).

    ``tied_head``: the LM head is the shared embedding (original-T5 style, decoder output scaled by
    d_model^-1/2). The two small sizes are tied: transformers 5 builds every T5 tied, so a tied model is
    the simple way to have 4.46 (legacy side) and 5 (detoxrl side) load the same function. FLAN-T5 is
    untied (its own ``lm_head``, no scaling); the ``flan-t5-*-lora`` sizes keep that, as FLAN-T5's
    checkpoints do: the folder holds both ``shared.weight`` and a different ``lm_head.weight`` and says
    ``tie_word_embeddings: false``, which transformers 4.46 reads as untied and unscaled, and which
    transformers 5 loads untied (both keys present and different) and unscaled
    (``scale_decoder_outputs`` false). The harness checks it: both sides report the same parameter
    checksum (a tied load would count the head once) and the same logits (:func:`forward_fingerprint`).
    """

    d_model: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    d_kv: int
    d_ff: int
    vocab_size: int
    tied_head: bool = True
    lora: LoraSpec | None = None


@dataclass(frozen=True)
class Workload:
    """One PPO step's work, identical on both sides."""

    batch_size: int = 16
    prompt_len: int = 128
    response_len: int = 32
    ppo_epochs: int = 4
    mini_batch_size: int = 4
    learning_rate: float = 1.41e-5


SIZES: dict[str, ModelSize] = {
    # The embedded default's policy (detoxrl.config.TestbedSettings): d_model 128, 2 + 2 layers, vocabulary 3,000.
    "testbed": ModelSize(d_model=128, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=32, d_ff=256,
                         vocab_size=3000),
    # The headline: d_model 256, 4 encoder + 4 decoder layers, vocabulary 8,000.
    "headline": ModelSize(d_model=256, num_layers=4, num_decoder_layers=4, num_heads=4, d_kv=64, d_ff=1024,
                          vocab_size=8000),
    # The larger check: d_model 512, 6 + 6 layers, same vocabulary.
    "large": ModelSize(d_model=512, num_layers=6, num_decoder_layers=6, num_heads=8, d_kv=64, d_ff=2048,
                       vocab_size=8000),
    # The seed recipe's workload: google/flan-t5-small / flan-t5-base's architecture (the values of
    # detoxrl.models.standin, which a test compares), untied head, LoRA r=32 on q and v.
    "flan-t5-small-lora": ModelSize(d_model=512, num_layers=8, num_decoder_layers=8, num_heads=6, d_kv=64,
                                    d_ff=1024, vocab_size=32128, tied_head=False, lora=LoraSpec()),
    "flan-t5-base-lora": ModelSize(d_model=768, num_layers=12, num_decoder_layers=12, num_heads=12, d_kv=64,
                                   d_ff=2048, vocab_size=32128, tied_head=False, lora=LoraSpec()),
}

RECIPE_WORKLOAD = Workload(batch_size=16, prompt_len=143, response_len=22, ppo_epochs=1, mini_batch_size=4,
                           learning_rate=1.41e-5)
"""The LoRA sizes' default workload: the flan-t5-dialogsum preset's PPO settings (batch 16, minibatch 4, one
PPO epoch, lr 1.41e-5) with DialogSum-length sequences: 143 prompt tokens, the median of the preset's
prompts over DialogSum's dev dialogues that its character filter keeps, and 22 response tokens, the median
reference summary there (both with ``</s>``, in the FLAN-T5 stand-in tokenizer; ``dialogsum_lengths.py``)."""


def default_workload(size_name: str) -> Workload:
    """The workload a size runs unless the command line changes it."""
    return RECIPE_WORKLOAD if SIZES[size_name].lora is not None else Workload()


# ----------------------------------------------------------------------------------- model folder
def build_model_folder(folder: Path, size: ModelSize, seed: int) -> Path:
    """Save a seeded random T5 and a word-level fast tokenizer into ``folder`` (hub layout, safetensors).

    The tokenizer files are written with the ``tokenizers`` library and a hand-made
    ``tokenizer_config.json`` naming ``PreTrainedTokenizerFast``, so that transformers 4 and 5 both
    load them; the prompts are token ids, so the tokenizer is only needed for its special tokens.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import T5Config, T5ForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    config = T5Config(
        vocab_size=size.vocab_size, d_model=size.d_model, d_kv=size.d_kv, d_ff=size.d_ff,
        num_layers=size.num_layers, num_decoder_layers=size.num_decoder_layers, num_heads=size.num_heads,
        feed_forward_proj="gated-gelu", tie_word_embeddings=size.tied_head, dropout_rate=0.1,
        pad_token_id=PAD_ID, eos_token_id=EOS_ID, decoder_start_token_id=PAD_ID,
    )
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
        head, shared = model.get_output_embeddings(), model.get_input_embeddings()
        if not size.tied_head and head.weight is shared.weight:  # transformers 5 built it tied anyway
            # FLAN-T5's own head, initialised as T5 v1.1 initialises lm_head (normal, std initializer_factor)
            head.weight = torch.nn.Parameter(torch.empty_like(shared.weight).normal_(0.0, 1.0))
    model.save_pretrained(folder, safe_serialization=True)
    if not size.tied_head:  # transformers 5 writes tie_word_embeddings: true for every T5; the hub's say false
        cfg_path = folder / "config.json"
        cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "tie_word_embeddings": False}, indent=2))

    vocab = {"<pad>": PAD_ID, "</s>": EOS_ID, "<unk>": UNK_ID}
    vocab.update({f"w{i}": i for i in range(FIRST_WORD_ID, size.vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.save(str(folder / "tokenizer.json"))
    tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>",
                  "unk_token": "<unk>", "model_max_length": 512, "padding_side": "right"}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps({"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2))
    return folder


def param_checksum(model: torch.nn.Module) -> float:
    """Sum of every parameter in float64, LoRA adapters left out: equal on both sides iff they loaded the
    same weights (peft's adapter initialisation differs between its versions; ``lora_B`` starts at zero, so
    the adapters do not change the function the model starts from)."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum() for n, p in model.named_parameters() if "lora_" not in n))


def lora_b_abs_sum(model: torch.nn.Module) -> float:
    """Σ|lora_B| over every adapter: 0 when the adapters start (peft zero-initialises B), > 0 once PPO
    has trained them, so a result shows that the adapters, not only the value head, learned."""
    with torch.no_grad():
        return float(sum(p.detach().double().abs().sum() for n, p in model.named_parameters() if "lora_B" in n))


def forward_fingerprint(model: torch.nn.Module, vocab_size: int, seed: int) -> float:
    """Sum of the absolute logits (float64) of one eval-mode forward: two prompts of 16 ids, decoder input
    ``[0, 5]``.

    Equal weights can still give different functions (T5's head tied or not, its output scaled or not);
    equal fingerprints say that both sides compute the same model. The model's train/eval mode is kept.
    """
    device = next(model.parameters()).device
    prompts = make_prompts(10**6, 2, 16, vocab_size, seed).to(device)
    dec = torch.tensor([[PAD_ID, 5], [PAD_ID, 5]], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(input_ids=prompts, attention_mask=torch.ones_like(prompts), decoder_input_ids=dec).logits
    finally:
        model.train(was_training)
    return float(logits.double().abs().sum())


# ---------------------------------------------------------------------------------------- prompts
def make_prompts(step: int, batch_size: int, prompt_len: int, vocab_size: int, seed: int) -> torch.Tensor:
    """The prompts of PPO step ``step``: ``(batch_size, prompt_len)`` ids, the last one ``</s>``.

    Every row has exactly ``prompt_len`` tokens (no padding), bodies drawn uniformly from
    ``[FIRST_WORD_ID, vocab_size)`` by a generator seeded with ``seed * 100003 + step``, so both sides
    see the same prompts at the same step.
    """
    g = torch.Generator().manual_seed(seed * 100003 + step)
    body = torch.randint(FIRST_WORD_ID, vocab_size, (batch_size, prompt_len - 1), generator=g)
    eos = torch.full((batch_size, 1), EOS_ID, dtype=torch.long)
    return torch.cat([body, eos], dim=1)


# ----------------------------------------------------------------------------------------- reward
def even_token_reward(response_ids: torch.Tensor) -> torch.Tensor:
    """Cheap stand-in for a judge: r_i = (1/T) · Σ_t [y_it mod 2 = 0], for responses ``(B, T)``.

    ``response_ids`` are the generated tokens only (no decoder start token); returns ``(B,)`` float32.
    """
    return (response_ids % 2 == 0).float().mean(dim=1)


# ----------------------------------------------------------------------------------------- memory
def peak_rss_mb() -> float:
    """High-water mark of this process's resident set (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cuda_peak_mb() -> float | None:
    """``torch.cuda.max_memory_allocated()`` in MiB (tensors only, not the allocator's cache); ``None``
    without CUDA."""
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def current_rss_mb() -> float:
    """Resident set now, from ``/proc/self/statm`` (falls back to the peak where that is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


class PhaseClock:
    """Accumulates wall and CPU seconds per named phase (CPU time: ``time.process_time``, all threads).

    On a machine that other processes share, a phase's CPU seconds stay close to what the phase would
    take alone (at one thread), while its wall seconds grow with the load; workers report both.
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block and add it to phase ``name``."""
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w0
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0

    def take(self) -> tuple[dict[str, float], dict[str, float]]:
        """Return ``(wall, cpu)`` accumulated so far and start again from zero."""
        out = (self.wall, self.cpu)
        self.wall, self.cpu = {}, {}
        return out


# ------------------------------------------------------------------------------------------ FLOPs
def t5_forward_flops(size: ModelSize, enc_len: int, dec_len: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of one T5 forward for one sequence, counted per matmul.

    With d = d_model, a = heads·d_kv, f = d_ff (gated: two input projections), V = vocab:
      encoder layer:  2·L_e·(4·d·a + 3·d·f)           projections q,k,v,o and wi_0, wi_1, wo
                      + 2·2·L_e²·a                     scores QKᵀ and weighted sum
      decoder layer:  2·L_d·(4·d·a + 2·d·a + 3·d·f)    self-attention q,k,v,o, cross-attention q,o, FFN
                      + 2·L_e·2·d·a                    cross-attention k,v (over the encoder output)
                      + 2·2·L_d²·a + 2·2·L_d·L_e·a     self- and cross-attention scores/sums
      LM head:        2·L_d·d·V          value head: 2·L_d·d (negligible, included)
    Embedding lookups, norms, softmax and activations are not counted (a few % at these sizes).
    """
    d, a, f, V = size.d_model, size.num_heads * size.d_kv, size.d_ff, size.vocab_size
    le, ld = enc_len, dec_len
    enc = size.num_layers * (2 * le * (4 * d * a + 3 * d * f) + 4 * le * le * a)
    dec_self = 2 * ld * 4 * d * a + 4 * ld * ld * a
    dec_cross = 2 * ld * 2 * d * a + 2 * le * 2 * d * a + 4 * ld * le * a
    dec_ffn = 2 * ld * 3 * d * f
    dec = size.num_decoder_layers * (dec_self + dec_cross + dec_ffn)
    head = 2 * ld * d * V + 2 * ld * d
    return float(enc + dec + head)


def update_phase_flops(size: ModelSize, work: Workload, dec_len: int | None = None) -> float:
    """FLOPs of the PPO update phase: epochs × batch × (forward + backward ≈ 3 × forward) for full
    fine-tuning, epochs × batch × :func:`t5_lora_update_flops` with LoRA.

    ``dec_len`` is the decoder length fed in training (default ``response_len + 1``: the decoder
    start token and the response, as the legacy trainer feeds it).
    """
    dec = work.response_len + 1 if dec_len is None else dec_len
    if size.lora is not None:  # no weight gradients for the frozen weights: see t5_lora_update_flops
        return t5_lora_update_flops(size, work.prompt_len, dec) * work.batch_size * work.ppo_epochs
    return 3.0 * t5_forward_flops(size, work.prompt_len, dec) * work.batch_size * work.ppo_epochs


def t5_lora_update_flops(size: ModelSize, enc_len: int, dec_len: int) -> float:
    """FLOPs of one forward + backward of a T5 with LoRA adapters for one sequence, counted per matmul.

    Only the adapters (and the value head) train, so the backward pass computes no gradient of a frozen
    weight: a frozen ``y = x·W`` costs its forward again for ``∂x`` (when ``x`` depends on an adapter) and
    nothing for ``∂W``. An adapter ``x·A·B`` (A: d×r, B: r×out) costs ``∂A`` and ``∂B`` and ``∂(x·A)``, plus
    ``∂x`` when ``x`` needs it. What needs no gradient: the embeddings that enter the first encoder and
    the first decoder layer, so that layer's frozen q, k, v projections (and ``∂x`` of its adapters) cost
    nothing backward, and its keys K (frozen weight, frozen input) need no ``∂K`` in ``Q·Kᵀ``. Every
    later activation depends on an adapter, so every other matmul costs its forward once more (``∂x``);
    the attention matmuls twice (both operands). Summed per sequence:

      forward    = t5_forward_flops + Σ_adapters 2·L·(d·r + r·out)
      backward   = forward matmuls of frozen weights (∂x)            − first layers' q, k, v
                 + 2 × attention matmuls                             − first layers' ∂K: 2·L²·a each
                 + 2 × Σ_adapters 2·L·(d·r + r·out)                  − first layers' ∂x of A: 2·L·d·r each
                 + value head ∂w (2·L_d·d)

    with ``L`` the adapter's input length (the decoder's cross-attention v reads the encoder output,
    ``L_e``). The targets must be ``q`` and ``v`` (the recipe's; peft adapts them in the encoder's and
    both of the decoder's attentions), on which the first layers' vanishing gradients above depend;
    norms, softmax and activations are not counted, as in the forward.
    """
    if size.lora is None:
        raise ValueError("t5_lora_update_flops needs a size with LoRA")
    if set(size.lora.target_modules) != {"q", "v"}:  # which first-layer gradients vanish depends on it
        raise ValueError(f"LoRA FLOPs are counted for targets q and v, not {list(size.lora.target_modules)}")
    d, a, r = size.d_model, size.num_heads * size.d_kv, size.lora.r
    le, ld = enc_len, dec_len
    proj = 2 * d * a  # one token through one projection (d -> a, or a -> d for o)
    ad_a, ad_b = 2 * d * r, 2 * r * a  # one token through A, through B (same for o: a -> r -> d)
    base_fwd = t5_forward_flops(size, le, ld)
    enc_attn, dec_self_attn, cross_attn = 4 * le * le * a, 4 * ld * ld * a, 4 * ld * le * a
    attn = size.num_layers * enc_attn + size.num_decoder_layers * (dec_self_attn + cross_attn)
    # adapter inputs: (length, is it a first layer's embedding input?), for q and v of each attention
    inputs: list[tuple[int, bool]] = []
    for layer in range(size.num_layers):
        inputs += [(le, layer == 0)] * 2
    for layer in range(size.num_decoder_layers):
        inputs += [(ld, layer == 0)] * 2  # self-attention q, v
        inputs += [(ld, False), (le, False)]  # cross-attention q (decoder states), v (encoder output)
    adapters_fwd = sum(n * (ad_a + ad_b) for n, _ in inputs)
    adapters_bwd = sum(n * (ad_a * (1 if first else 2) + 2 * ad_b) for n, first in inputs)
    frozen_first = 3 * le * proj + 3 * ld * proj  # first encoder / decoder layer's q, k, v: no ∂x
    dk_first = 2 * le * le * a + 2 * ld * ld * a  # and no ∂K in their Q·Kᵀ
    frozen_bwd = (base_fwd - attn) - frozen_first
    backward = frozen_bwd + 2 * attn - dk_first + adapters_bwd + 2 * ld * d
    return float(base_fwd + adapters_fwd + backward)


def t5_param_count(size: ModelSize) -> int:
    """Parameters of the T5 as configured (LM head tied to the shared embedding), for ``6·N·D`` checks."""
    d, a, f, V = size.d_model, size.num_heads * size.d_kv, size.d_ff, size.vocab_size
    enc_layer = 4 * d * a + 3 * d * f + 2 * d
    dec_layer = 8 * d * a + 3 * d * f + 3 * d
    rel = 32 * size.num_heads * 2  # relative attention bias in the first encoder and decoder layer
    return int(V * d + size.num_layers * enc_layer + size.num_decoder_layers * dec_layer + 2 * d + rel)


# ------------------------------------------------------------------------------------- worker CLI
def worker_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every worker accepts (the harness passes all of them)."""
    w = Workload()
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model-dir", required=True, type=Path, help="folder with the T5 and tokenizer")
    p.add_argument("--batch-size", type=int, default=w.batch_size)
    p.add_argument("--prompt-len", type=int, default=w.prompt_len)
    p.add_argument("--response-len", type=int, default=w.response_len)
    p.add_argument("--ppo-epochs", type=int, default=w.ppo_epochs)
    p.add_argument("--mini-batch-size", type=int, default=w.mini_batch_size)
    p.add_argument("--learning-rate", type=float, default=w.learning_rate)
    p.add_argument("--steps", type=int, default=5, help="timed PPO steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed PPO steps first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--lora-r", type=int, default=0, help="LoRA rank; 0 = full fine-tuning with a frozen copy")
    p.add_argument("--lora-alpha", type=float, default=32.0)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--lora-targets", default="q,v", help="comma-separated module names")
    return p


def lora_from_args(args: argparse.Namespace) -> LoraSpec | None:
    """The :class:`LoraSpec` a worker was asked for (``None``: full fine-tuning)."""
    if args.lora_r <= 0:
        return None
    return LoraSpec(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                    target_modules=tuple(t for t in args.lora_targets.split(",") if t))


def lora_args(lora: LoraSpec | None) -> list[str]:
    """The worker arguments that ask for ``lora`` (none for full fine-tuning)."""
    if lora is None:
        return []
    return ["--lora-r", str(lora.r), "--lora-alpha", repr(lora.alpha), "--lora-dropout", repr(lora.dropout),
            "--lora-targets", ",".join(lora.target_modules)]


def workload_from_args(args: argparse.Namespace) -> Workload:
    """The :class:`Workload` a worker was asked for."""
    return Workload(batch_size=args.batch_size, prompt_len=args.prompt_len, response_len=args.response_len,
                    ppo_epochs=args.ppo_epochs, mini_batch_size=args.mini_batch_size,
                    learning_rate=args.learning_rate)


RESULT_PREFIX = "BENCH_RESULT "
"""A worker's result is the one stdout line that starts with this prefix, followed by JSON."""


def emit_result(result: dict[str, Any]) -> None:
    """Print the worker's result line (and flush, so nothing after it can interleave)."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse_result(stdout: str) -> dict[str, Any]:
    """The result a worker printed; ``ValueError`` when it printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise ValueError("the worker printed no result line")


def workload_dict(work: Workload) -> dict[str, Any]:
    """JSON form of a workload (for the result line)."""
    return asdict(work)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere) and torch's kernels."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")) and ":" in line:
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name} (torch CPU capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores)"
