"""The testbed's red language model: a tiny GPT-2 trained offline on the testbed's training dialogues,
which the red-team methods ``zero_shot`` and ``few_shot`` sample dialogues from.

Each dialogue is written ``<s> dialogue </s>`` with the testbed's tokenizer, and the training stream is
those sequences packed end to end and cut into windows of ``block`` tokens (so the model also learns that
``</s> <s>`` starts a new dialogue, which is what few-shot prompting relies on). Training is plain
next-token cross-entropy with AdamW; the same seed gives the same model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import processors
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from detoxrl.utils import atomic_dir, progress

BLOCK = 320
"""Training window and the model's context: two or three testbed dialogues."""


def build_tiny_gpt2(tokenizer, seed: int = 0, n_positions: int = BLOCK) -> GPT2LMHeadModel:
    cfg = GPT2Config(vocab_size=len(tokenizer), n_embd=128, n_layer=2, n_head=4, n_positions=n_positions,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def packed_stream(tokenizer, dialogues: Sequence[str]) -> torch.Tensor:
    ids: list[int] = []
    for text in dialogues:
        ids += [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return torch.tensor(ids, dtype=torch.long)


def train_red_lm(dialogues: Sequence[str], tokenizer_dir: str | Path, out: str | Path, *, steps: int = 600,
                 batch_size: int = 4, learning_rate: float = 3e-3, seed: int = 0, block: int = BLOCK) -> Path:
    """Train the red LM on ``dialogues`` and save it (with the tokenizer) in ``out``; returns ``out``."""
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model = build_tiny_gpt2(tok, seed, n_positions=block)
    stream = packed_stream(tok, dialogues)
    if stream.numel() <= block + 1:
        raise ValueError(f"the red LM needs more than {block} tokens of dialogue, got {stream.numel()}")
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.05, 1 - s / max(1, steps)))
    model.train()
    with progress() as bar:
        task = bar.add_task("redteam: train the red LM", total=steps, info="")
        for _ in range(steps):
            starts = [rng.randrange(stream.numel() - block - 1) for _ in range(batch_size)]
            x = torch.stack([stream[s : s + block] for s in starts])
            loss = model(input_ids=x, labels=x).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            bar.update(task, advance=1, info=f"loss {loss.item():.3f}")
    model.eval()
    # as a causal LM's tokenizer: <s> before the text, nothing after (a query is a dialogue's start)
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)])
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return Path(out)
