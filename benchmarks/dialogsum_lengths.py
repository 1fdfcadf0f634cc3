"""How long the flan-t5-dialogsum preset's prompts and DialogSum's summaries are, in a FLAN-T5 tokenizer's tokens.

The LoRA sizes of ``ppo_vs_trl_legacy.py`` use a fixed prompt and response length (the benchmark needs no
data); this script is how those two numbers were derived, so that anyone can check or redo it::

    python -m detoxrl standin STANDINS -m flan-t5-small           # the stand-in tokenizer (T5 kind, 32,100)
    python benchmarks/dialogsum_lengths.py --tokenizer STANDINS/flan-t5-small --data ../shared/data/dialogsum

It loads DialogSum's dev split from the folder, keeps the dialogues the preset keeps (its
``data.min_text_chars``/``max_text_chars``: 200 < characters ≤ 1000), fills the preset's
``data.prompt_template`` and counts tokens as the pipeline does (``detoxrl.data.prompts.build_prompts``:
with the special tokens, i.e. T5's ``</s>``). It prints the median and quartiles of the prompt lengths and
of the reference summaries' lengths (with ``</s>``: the tokens a summariser generates before it stops).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from detoxrl.config import load_config
from detoxrl.data.loaders import load_dialogsum
from detoxrl.data.prompts import build_prompts, count_tokens
from detoxrl.models.loading import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "flan-t5-dialogsum.yaml"


def quartiles(values: list[int]) -> dict[str, float]:
    """Count, median and the lower and upper quartiles (``statistics.quantiles``, inclusive method)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"n": len(values), "median": statistics.median(values), "q1": q1, "q3": q3}


def lengths(data_dir: Path, tokenizer_dir: Path, split: str = "dev", preset: Path = PRESET) -> dict[str, dict]:
    """Token-length statistics of the preset's prompts and the references over ``split`` of ``data_dir``."""
    cfg = load_config(preset)
    tok = load_tokenizer(str(tokenizer_dir), is_seq2seq=True)
    examples = load_dialogsum(data_dir, split).examples
    kept, stats = build_prompts(examples, tok, cfg.data)
    prompt_tokens = count_tokens(tok, [p.prompt for p in kept])
    summary_tokens = count_tokens(tok, [p.references[0] for p in kept if p.references])
    return {"filter": {k: stats[k] for k in ("total", "kept", "too_few_chars", "too_many_chars", "too_long")},
            "prompt": quartiles(prompt_tokens), "summary": quartiles(summary_tokens)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", type=Path, required=True, help="a FLAN-T5 (stand-in) folder with its tokenizer")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dialogsum",
                   help="DialogSum folder (dialogsum.dev.jsonl)")
    p.add_argument("--split", default="dev")
    args = p.parse_args(argv)
    out = lengths(args.data, args.tokenizer, args.split)
    f, pr, su = out["filter"], out["prompt"], out["summary"]
    print(f"{args.split}: {f['total']} dialogues, {f['kept']} kept by the preset's character filter "
          f"({f['too_few_chars']} too short, {f['too_many_chars']} too long, {f['too_long']} over max_prompt_tokens)")
    print(f"prompt tokens (template + dialogue + </s>): median {pr['median']:g}, quartiles {pr['q1']:g} / {pr['q3']:g}")
    print(f"summary tokens (first reference + </s>): median {su['median']:g}, quartiles {su['q1']:g} / {su['q3']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
