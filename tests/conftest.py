"""Shared fixtures: tiny random models of the real architectures, saved to a folder and loaded back
exactly as a hub model would be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DETOXRL_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# The learning tests (reward up, loss down, accuracy up) train with this seed. The suite runs seed 0;
# benchmarks/learning_margins.py sets it to measure each test's margin over several seeds.
SEED_ENV = "DETOXRL_TEST_SEED"
# Where the learning tests append the figure each asserts on (one JSON line each), for the same script.
MARGINS_ENV = "DETOXRL_MARGINS_FILE"


def learning_seed() -> int:
    """The training seed of a learning test: 0 unless ``$DETOXRL_TEST_SEED`` says otherwise."""
    return int(os.environ.get(SEED_ENV, "0"))


def record_margin(request, figure: str, value: float, threshold: float) -> None:
    """Note the figure a learning test (pytest's ``request``) is about to assert on (``value`` must
    exceed ``threshold``) in ``$DETOXRL_MARGINS_FILE`` when it is set; the assertion stays in the test."""
    path = os.environ.get(MARGINS_ENV)
    if not path:
        return
    import json

    import torch

    test = request.node.nodeid.split("/")[-1].replace(".py::", "::")
    row = {"test": test, "figure": figure, "value": float(value), "threshold": float(threshold),
           "seed": learning_seed(), "capability": torch.backends.cpu.get_cpu_capability()}
    with open(path, "a", encoding="utf-8") as fh:  # one short line per write: safe beside xdist workers
        fh.write(json.dumps(row) + "\n")


VOCAB = ["<pad>", "</s>", "<unk>", "<s>"] + [f"w{i}" for i in range(60)]


def make_tokenizer(append_eos: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if append_eos:
        tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    from tokenizers import decoders

    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", bos_token="<s>")


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny-t5")
    cfg = T5Config(vocab_size=len(VOCAB), d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=2, d_kv=16, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                   dropout_rate=0.1)
    T5ForConditionalGeneration(cfg).save_pretrained(d)
    make_tokenizer(append_eos=True).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny-gpt2")
    cfg = GPT2Config(vocab_size=len(VOCAB), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                     bos_token_id=3, eos_token_id=1, pad_token_id=0,
                     # GPT-2's default init (0.02) gives near-uniform logits through the tied
                     # embeddings at this size, which LoRA alone can barely move.
                     initializer_range=0.2)
    GPT2LMHeadModel(cfg).save_pretrained(d)
    make_tokenizer(append_eos=False).save_pretrained(d)
    return d


@pytest.fixture(params=["t5", "gpt2"])
def tiny_policy_dir(request, tiny_t5_dir, tiny_gpt2_dir) -> Path:
    return tiny_t5_dir if request.param == "t5" else tiny_gpt2_dir


def write_tiny_run(tmp_path: Path, policy_dir: Path, **overrides) -> Path:
    """A complete config for a tiny offline run: word-level data, the given policy, a word-list judge."""
    import json
    import random

    import yaml

    rng = random.Random(0)
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 64), ("test", 16)):
        with open(data / f"{split}.jsonl", "w") as fh:
            for i in range(n):
                words = [f"w{rng.randrange(10, 60)}" for _ in range(rng.randrange(4, 9))]
                fh.write(json.dumps({"id": f"{split}-{i}", "dialogue": " ".join(words),
                                     "summary": " ".join(words[:3])}) + "\n")
    (tmp_path / "bad_words.txt").write_text("w7\nw8\nw9\n")
    cfg = {
        "name": "tiny",
        "seed": 0,
        "run_dir": str(tmp_path / "run"),
        "policy": {"name_or_path": str(policy_dir)},
        "data": {"source": str(data), "format": "jsonl", "train_split": "train", "eval_split": "test",
                 "prompt_template": "{text}", "max_prompt_tokens": 32},
        "reward": {"judges": [{"name": "bad-words", "type": "lexicon",
                               "lexicon": str(tmp_path / "bad_words.txt")}]},
        "ppo": {"steps": 3, "batch_size": 8, "mini_batch_size": 4, "ppo_epochs": 1,
                "learning_rate": 1e-3, "generation": {"max_new_tokens": 6}},
        "eval": {"n_prompts": 16, "batch_size": 8, "bootstrap": 50, "generation": {"max_new_tokens": 6}},
    }
    for key, value in overrides.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
