"""Shared fixtures: tiny random models of the real architectures, saved to a folder and loaded back
exactly as a hub model would be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detoxrl.testing import VOCAB, tiny_gpt2, tiny_t5, word_tokenizer  # noqa: F401 (VOCAB: for tests)

os.environ.setdefault("DETOXRL_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `auto` precision computes in float32 on every machine the suite runs on, as it does on an AVX2 CPU, so
# that the same tests run the same numbers everywhere (tests/test_precision.py mocks the detection).
os.environ.setdefault("DETOXRL_NATIVE_BF16", "0")

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


make_tokenizer = word_tokenizer


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    return Path(tiny_t5(tmp_path_factory.mktemp("tiny-t5")))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    return Path(tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2")))


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
