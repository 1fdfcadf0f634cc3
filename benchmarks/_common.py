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
class ModelSize:
    """A scaled-down T5 with FLAN-T5's gated-GELU feed-forward.

    The LM head is tied to the shared embedding (original-T5 style, decoder output scaled by
    d_model^-1/2): transformers 5 always ties T5's head, so only a tied model loads identically in
    transformers 4.46 (legacy side) and 5 (detoxrl side). The matmuls are the same as an untied head's.
    """

    d_model: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    d_kv: int
    d_ff: int
    vocab_size: int


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
    # The headline: d_model 256, 4 encoder + 4 decoder layers, vocabulary 8,000.
    "headline": ModelSize(d_model=256, num_layers=4, num_decoder_layers=4, num_heads=4, d_kv=64, d_ff=1024,
                          vocab_size=8000),
    # The larger check: d_model 512, 6 + 6 layers, same vocabulary.
    "large": ModelSize(d_model=512, num_layers=6, num_decoder_layers=6, num_heads=8, d_kv=64, d_ff=2048,
                       vocab_size=8000),
}


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
        feed_forward_proj="gated-gelu", tie_word_embeddings=True, dropout_rate=0.1,
        pad_token_id=PAD_ID, eos_token_id=EOS_ID, decoder_start_token_id=PAD_ID,
    )
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
    model.save_pretrained(folder, safe_serialization=True)

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
    """Sum of every parameter in float64: equal on both sides iff they loaded the same weights."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in model.parameters()))


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
    """FLOPs of the PPO update phase: epochs × batch × (forward + backward ≈ 3 × forward).

    ``dec_len`` is the decoder length fed in training (default ``response_len + 1``: the decoder
    start token and the response, as the legacy trainer feeds it).
    """
    dec = work.response_len + 1 if dec_len is None else dec_len
    return 3.0 * t5_forward_flops(size, work.prompt_len, dec) * work.batch_size * work.ppo_epochs


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
    return p


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
