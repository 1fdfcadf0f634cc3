"""``prepare`` for the embedded default: build the whole testbed into ``{run_dir}/testbed``.

Layout::

    testbed/
      fingerprint.json     hash of the testbed settings (+ prompt template, word list, generator code)
      lexicon.txt          the offensive words this testbed used, one per line
      stats.json           counts per split / topic / severity, shares, token lengths
      data/train.jsonl     DialogSum schema (fname, dialogue, summary, topic) + severity, offensive_words, combo
      data/test.jsonl      the same; only (topic, template, key value) combinations unseen in train
      data/sft_train.jsonl train with parroted summaries for a share of hostile dialogues
      data/judge_{train,eval}.jsonl      text, label (nothate|hate), category, source (turn|summary),
                           and toxic-bert's six labels as 0/1 columns (the multi-label judge's file)
      data/rankings_{train,eval}.jsonl   prompt, completions, ranks (1 = best)
      data/summary_labels_{train,test}.jsonl  summaries labelled per principle, with the answers a
                           critique should give (:mod:`~detoxrl.testbed.summary_labels`)
      tokenizer/           the trained tokenizer (policy flavour), loadable with AutoTokenizer
      policy-init/         untrained tiny T5 + tokenizer (save_pretrained, safetensors)
      judge-init/          untrained tiny RoBERTa classifier (nothate/hate) + tokenizer
      judge-multi-init/    untrained tiny BERT with toxic-bert's six sigmoid labels + tokenizer

The folder is built in a temporary sibling and renamed into place, so it is either complete or absent.
The same settings give the same files byte for byte; a second ``prepare`` with the same fingerprint
reuses the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import tokenizers
import transformers

from detoxrl.config import Config
from detoxrl.data.prompts import fill_template
from detoxrl.errors import ConfigError
from detoxrl.testbed import corpus as C
from detoxrl.testbed.lexicon import Lexicon, build_lexicon, find_words, wordlist_path
from detoxrl.testbed.models import build_tiny_judge, build_tiny_multilabel_judge, build_tiny_t5
from detoxrl.testbed.summary_labels import LABELS, answer_texts, summary_label_rows
from detoxrl.testbed.tokenizer import judge_tokenizer, policy_tokenizer, train_tokenizer
from detoxrl.utils import atomic_dir, console, progress, read_json, write_json, write_jsonl

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bump when the files ``prepare`` writes change for the same settings."""
JUDGE_MAX_PER_LABEL = 6000
ANSWERS_IN_TOKENIZER = 1000
"""Answers of each kind (yes, no) among the tokenizer's training texts."""
EXPECTED = ("lexicon.txt", "stats.json", "data/train.jsonl", "data/test.jsonl", "data/sft_train.jsonl",
            "data/judge_train.jsonl", "data/judge_eval.jsonl", "data/rankings_train.jsonl",
            "data/rankings_eval.jsonl", "data/summary_labels_train.jsonl", "data/summary_labels_test.jsonl",
            "tokenizer/tokenizer.json", "policy-init/config.json",
            "policy-init/model.safetensors", "judge-init/config.json", "judge-init/model.safetensors",
            "judge-multi-init/config.json", "judge-multi-init/model.safetensors")


def fingerprint(cfg: Config) -> dict[str, Any]:
    """What the testbed's files depend on, and its SHA-256 ``hash``."""
    src = wordlist_path()
    code = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):  # the generator itself: edits rebuild
        code.update(f.name.encode() + b"\0" + f.read_bytes())
    body = {
        "format_version": FORMAT_VERSION,
        "code_sha256": code.hexdigest(),
        "testbed": cfg.testbed.model_dump(mode="json"),
        "prompt_template": cfg.data.prompt_template,
        "wordlist_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    body["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return body


def is_current(folder: Path, fp: dict[str, Any]) -> bool:
    """True if ``folder`` holds a complete testbed built with fingerprint ``fp``."""
    f = folder / "fingerprint.json"
    if not f.exists() or any(not (folder / p).exists() for p in EXPECTED):
        return False
    try:
        return read_json(f).get("hash") == fp["hash"]
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------------------- statistics
def _length_stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    return {"min": s[0], "mean": round(statistics.fmean(s), 2), "p50": s[len(s) // 2],
            "p95": s[min(len(s) - 1, int(0.95 * len(s)))], "max": s[-1]}


def _share(flags: list[bool]) -> float:
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def corpus_stats(corpus: C.Corpus, lex: Lexicon, tok, template: str) -> dict[str, Any]:
    """Counts per split, topic and severity; hostile and parroting shares; token lengths."""
    words = frozenset(lex.words)
    has_word = lambda text: bool(find_words(text, words))  # noqa: E731
    count = lambda texts: [len(ids) for ids in tok(texts)["input_ids"]]  # noqa: E731
    out: dict[str, Any] = {}
    for split, ds in (("train", corpus.train), ("test", corpus.test)):
        out[split] = {
            "n": len(ds),
            "topics": dict(sorted(Counter(d.topic for d in ds).items())),
            "severity": dict(sorted(Counter(d.severity for d in ds).items())),
            "tier": dict(sorted(Counter(d.tier for d in ds).items())),
            "grade": dict(sorted(Counter(d.grade for d in ds).items())),
            "ambiguous": dict(sorted(Counter(d.ambiguous for d in ds if d.ambiguous).items())),
            "hostile_share": _share([d.severity != "none" for d in ds]),
            "gold_with_lexicon_word": _share([has_word(d.summary) for d in ds]),
            "sft_with_lexicon_word": _share([has_word(d.sft_summary) for d in ds]),
            "tokens": {
                "prompt": _length_stats(count([fill_template(template, d.dialogue) for d in ds])),
                "dialogue": _length_stats(count([d.dialogue for d in ds])),
                "summary": _length_stats(count([d.summary for d in ds])),
                "sft_summary": _length_stats(count([d.sft_summary for d in ds])),
            },
        }
    out["test"]["note"] = ("sft_with_lexicon_word on test is the share the test split would have if its "
                           "summaries were parroted the way sft_train's are")
    out["combos"] = {"train": len({d.combo for d in corpus.train}), "test": len({d.combo for d in corpus.test}),
                     "shared": len({d.combo for d in corpus.train} & {d.combo for d in corpus.test})}
    return out


# ------------------------------------------------------------------------------------------ build
def _write_data(folder: Path, corpus: C.Corpus, lex: Lexicon, seed: int, template: str) -> dict[str, Any]:
    data = folder / "data"
    write_jsonl(data / "train.jsonl", [C.dialogsum_row(d) for d in corpus.train])
    write_jsonl(data / "test.jsonl", [C.dialogsum_row(d) for d in corpus.test])
    write_jsonl(data / "sft_train.jsonl", [C.sft_row(d) for d in corpus.train])
    jt = C.judge_rows(corpus.train, seed, JUDGE_MAX_PER_LABEL, lex.words, lex.insulting)
    je = C.judge_rows(corpus.test, seed + 1, offensive_words=lex.words, insulting=lex.insulting)
    write_jsonl(data / "judge_train.jsonl", jt)
    write_jsonl(data / "judge_eval.jsonl", je)
    rt = C.ranking_rows(corpus.train, template)
    re_ = C.ranking_rows(corpus.test, template)
    write_jsonl(data / "rankings_train.jsonl", rt)
    write_jsonl(data / "rankings_eval.jsonl", re_)
    labelled, answers = {}, []
    for split, ds in (("train", corpus.train), ("test", corpus.test)):
        rows = summary_label_rows(ds, split, lex, seed)
        write_jsonl(data / f"summary_labels_{split}.jsonl", rows)
        labelled[split] = {"rows": len(rows), **{k: sum(r["labels"][k] for r in rows) for k in LABELS}}
        answers = answers or answer_texts(rows, ANSWERS_IN_TOKENIZER, seed)
    return {"summary_labels": labelled, "answer_texts": answers,
            "judge_train": dict(sorted(Counter(r["label"] for r in jt).items())),
            "judge_eval": dict(sorted(Counter(r["label"] for r in je).items())),
            "judge_train_categories": dict(sorted(Counter(r["category"] for r in jt).items())),
            "rankings_train": len(rt), "rankings_eval": len(re_)}


def _tokenizer_texts(corpus: C.Corpus, template: str, answers: list[str]) -> list[str]:
    """The prompts and summaries of the train split, and answers to critique requests (so that the
    answer words ``yes`` and ``no`` are tokens of their own)."""
    texts = [fill_template(template, d.dialogue) for d in corpus.train] + answers
    texts += [d.parrot_summary for d in corpus.train] + [d.neutral_summary for d in corpus.train if d.neutral_clause]
    return texts


def build_testbed(cfg: Config, folder: Path, fp: dict[str, Any]) -> dict[str, Any]:
    """Write every testbed file into ``folder`` (an empty temporary folder); returns the stats."""
    s = cfg.testbed
    template = cfg.data.prompt_template
    steps = ["lexicon", "corpus", "data files", "tokenizer", "models", "stats"]
    with progress() as bar:
        task = bar.add_task("prepare", total=len(steps), info="lexicon")

        def step(name: str) -> None:
            bar.update(task, advance=1, info=name)

        lex = build_lexicon()
        (folder / "lexicon.txt").write_text(lex.to_text(), encoding="utf-8")
        step(f"corpus ({s.n_train} + {s.n_test} dialogues)")
        corpus = C.build_corpus(s, lex)
        step("data files")
        files = _write_data(folder, corpus, lex, s.seed, template)
        step("tokenizer")
        raw = train_tokenizer(_tokenizer_texts(corpus, template, files.pop("answer_texts")), s.vocab_size)
        ptok = policy_tokenizer(raw)
        ptok.save_pretrained(folder / "tokenizer")
        step("models")
        jtok = judge_tokenizer(raw)
        t5 = build_tiny_t5(ptok, s.policy, seed=s.seed)
        t5.save_pretrained(folder / "policy-init")
        ptok.save_pretrained(folder / "policy-init")
        judge = build_tiny_judge(jtok, s.judge, seed=s.seed)
        judge.save_pretrained(folder / "judge-init")
        jtok.save_pretrained(folder / "judge-init")
        multi = build_tiny_multilabel_judge(jtok, s.judge, seed=s.seed)
        multi.save_pretrained(folder / "judge-multi-init")
        jtok.save_pretrained(folder / "judge-multi-init")
        step("stats")
        stats = corpus_stats(corpus, lex, ptok, template)
        stats.update(files=files, lexicon_words=len(lex.words),
                     lexicon_pools={"insulting": len(lex.insulting), "profane": len(lex.profane)},
                     vocab_size=len(ptok),
                     parameters={"policy": sum(p.numel() for p in t5.parameters()),
                                 "judge": sum(p.numel() for p in judge.parameters()),
                                 "judge_multi": sum(p.numel() for p in multi.parameters())})
        write_json(folder / "stats.json", stats)
        write_json(folder / "fingerprint.json", fp)
        bar.update(task, advance=1, info="done")
    return stats


def prepare(cfg: Config) -> Path:
    """Build (or reuse) the embedded testbed of ``cfg`` in ``{run_dir}/testbed``; returns that folder."""
    if cfg.testbed is None:
        raise ConfigError("prepare: the config has no testbed section (a preset uses its own models and data)")
    out = cfg.path("{run_dir}/testbed")
    fp = fingerprint(cfg)
    if is_current(out, fp):
        log.info("reusing the testbed in %s", out)
        console.print(f"reusing the testbed in {out} (same settings)")
        return out
    t0 = time.perf_counter()
    with atomic_dir(out) as tmp:
        stats = build_testbed(cfg, tmp, fp)
    tr = stats["train"]
    console.print(
        f"testbed built in {time.perf_counter() - t0:.1f}s at {out}: {tr['n']} train / {stats['test']['n']} test "
        f"dialogues, hostile {tr['hostile_share']:.0%}, SFT summaries with a lexicon word "
        f"{tr['sft_with_lexicon_word']:.1%}, prompt tokens mean {tr['tokens']['prompt'].get('mean')}")
    return out
