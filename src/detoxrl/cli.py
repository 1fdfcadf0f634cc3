"""The ``detoxrl`` command: one thin sub-command per stage, no logic here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from detoxrl.errors import DetoxError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Make language models less toxic with RLHF (PPO with a KL penalty against the reference).\n\n"
         "Every command takes an optional CONFIG (a YAML file, or a preset name such as "
         "flan-t5-dialogsum); without one it uses the embedded offline testbed (configs/default.yaml).",
)

ConfigArg = typer.Argument(None, help="YAML config or preset name; default: the embedded testbed.")
SetOpt = typer.Option(None, "--set", "-s", help="Dotted override, e.g. --set ppo.learning_rate=1e-5 (repeatable).")
RunDirOpt = typer.Option(None, "--run-dir", help="Run folder (default runs/<config name>).")
AllowChangeOpt = typer.Option(False, "--allow-config-change",
                              help="With --resume: continue even where the checkpoint was made with other "
                                   "settings (recorded in the run and the model card).")


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from detoxrl.utils import configure_threads

    configure_threads()


def _load(config: Optional[str], overrides: Optional[list[str]], run_dir: Optional[Path]):
    from detoxrl.config import load_config

    return load_config(config, overrides or [], run_dir)


def _guard(fn):
    """Print a user error as one clear line and exit 2, without a traceback."""
    try:
        return fn()
    except DetoxError as exc:
        from detoxrl.utils import console

        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _stage(stage: str, config, overrides, run_dir, **kw):
    def go():
        from detoxrl.pipeline import run_stage

        _quiet_libraries()
        cfg = _load(config, overrides, run_dir)
        run_stage(cfg, stage, **kw)

    _guard(go)


@app.command()
def prepare(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
            run_dir: Optional[Path] = RunDirOpt):
    """Build the embedded testbed (corpus, tokenizer, tiny models), or resolve a preset's models."""
    _stage("prepare", config, set_, run_dir)


@app.command()
def sft(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
        run_dir: Optional[Path] = RunDirOpt):
    """Supervised fine-tuning on (prompt, target) pairs; on the testbed this makes the base policy."""
    _stage("sft", config, set_, run_dir)


@app.command("train-rm")
def train_rm(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
             run_dir: Optional[Path] = RunDirOpt):
    """Train a reward model from rankings (pairwise loss) or a classifier from labelled text."""
    _stage("train-rm", config, set_, run_dir)


@app.command("constitution")
def constitution_(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
                  run_dir: Optional[Path] = RunDirOpt):
    """SL-CAI: the policy critiques its own responses against each principle, revises the violating ones,
    and is fine-tuned on the revisions whose critique passes (PPO then starts from it)."""
    _stage("constitution", config, set_, run_dir)


@app.command()
def ppo(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
        run_dir: Optional[Path] = RunDirOpt,
        resume: bool = typer.Option(False, help="Continue from the newest complete checkpoint."),
        allow_config_change: bool = AllowChangeOpt):
    """PPO with a KL penalty against the frozen reference. Works under `accelerate launch`."""
    _stage("ppo", config, set_, run_dir, resume=resume, allow_config_change=allow_config_change)


@app.command("eval")
def eval_(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
          run_dir: Optional[Path] = RunDirOpt,
          samples: Optional[int] = typer.Option(None, help="Samples per prompt (reports expected max toxicity).")):
    """Compare the reference and the trained policy on held-out prompts; writes eval.json and eval_table.csv."""
    _stage("eval", config, set_, run_dir, samples=samples)


@app.command()
def redteam(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
            run_dir: Optional[Path] = RunDirOpt,
            policy: Optional[Path] = typer.Option(None, help="Policy folder to attack (default: ppo.output_dir)."),
            out: Optional[str] = typer.Option(None, help="Output folder (default: redteam.output_dir)."),
            budget: Optional[int] = typer.Option(None, help="Target generations per method (redteam.budget)."),
            method: Optional[list[str]] = typer.Option(
                None, help="perturbation, zero_shot, few_shot or rl (repeatable; default: redteam.methods).")):
    """Find prompts that make a policy toxic; writes redteam/cases.jsonl and redteam/summary.json."""
    extra = [f"redteam.policy={policy}"] if policy else []
    extra += [f"redteam.output_dir={out}"] if out else []
    extra += [f"redteam.budget={budget}"] if budget else []
    extra += ["redteam.methods=[" + ",".join(method) + "]"] if method else []
    _stage("redteam", config, list(set_ or []) + extra, run_dir)


@app.command()
def report(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
           run_dir: Optional[Path] = RunDirOpt):
    """Write report.html (self-contained, with plots) and the model card beside the saved policy."""
    _stage("report", config, set_, run_dir)


@app.command()
def run(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
        run_dir: Optional[Path] = RunDirOpt,
        resume: bool = typer.Option(False, help="Resume PPO from its newest complete checkpoint."),
        allow_config_change: bool = AllowChangeOpt,
        force: Optional[list[str]] = typer.Option(None, help="Re-run this stage even if its output exists."),
        no_rerun: bool = typer.Option(False, "--no-rerun",
                                      help="Refuse, listing the changes, instead of remaking stale stages.")):
    """Run every stage that is not up to date: prepare → sft → [candidates → labels] → train-rm →
    [constitution] → ppo → [redteam] → eval → report (candidates and labels when labels.enabled, as in
    configs/human-feedback.yaml; constitution (SL-CAI) when constitution.enabled, as in configs/sl-cai.yaml;
    redteam when redteam.enabled).

    A stage is skipped when its output exists and was made from the same settings, inputs and data;
    a changed one is rerun with every stage after it, after printing what changed."""

    def go():
        from detoxrl.pipeline import STAGES, run_pipeline

        _quiet_libraries()
        cfg = _load(config, set_, run_dir)
        bad = sorted(set(force or ()) - set(STAGES))
        if bad:
            raise DetoxError(f"--force: unknown stage(s) {bad}; stages are {list(STAGES)}")
        run_pipeline(cfg, resume=resume, force=tuple(force or ()), rerun=not no_rerun,
                     allow_config_change=allow_config_change)

    _guard(go)


@app.command()
def candidates(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
               run_dir: Optional[Path] = RunDirOpt):
    """Sample labels.n_candidates distinct responses per prompt, score them with every judge, and write the
    labelling batch labels/batch.jsonl (and labels/instructions.md when it is absent)."""

    def go():
        from detoxrl.feedback.candidates import run_candidates

        _quiet_libraries()
        run_candidates(_load(config, set_, run_dir))

    _guard(go)


@app.command()
def label(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
          run_dir: Optional[Path] = RunDirOpt,
          port: int = typer.Option(8765, help="Port on 127.0.0.1 (0: any free port)."),
          batch: Optional[Path] = typer.Option(None, help="Batch to label (default: labels/batch.jsonl).")):
    """Serve the labelling page on 127.0.0.1: people rank each prompt's candidates (ties allowed) or give a
    special label; every submission is saved at once to labels/rankings.jsonl."""

    def go():
        from detoxrl.feedback.server import serve

        serve(_load(config, set_, run_dir), port=port, batch=batch)

    _guard(go)


@app.command("judge-eval")
def judge_eval(file: Path = typer.Argument(..., help="Labelled csv/jsonl to score."),
               config: Optional[str] = typer.Option(None, "--config", "-c", help="Config whose judges to audit."),
               set_: Optional[list[str]] = SetOpt, run_dir: Optional[Path] = RunDirOpt,
               judge: Optional[str] = typer.Option(None, help="Name of a judge in the config (default: all)."),
               text_column: str = "text", label_column: str = "label",
               category_column: Optional[str] = typer.Option(None, help="Report per value of this column too."),
               positive_label: Optional[list[str]] = typer.Option(
                   None, "--positive-label",
                   help="A label that means toxic, any case (repeatable); default: hate, 1, toxic, true. "
                        "A file with no toxic row, or no other row, is refused.")):
    """Score judges on a labelled file: accuracy, F1 and AUC, overall and per category."""

    def go():
        from detoxrl.rewards.build import build_judge
        from detoxrl.rewards.judge_eval import POSITIVE_LABELS, format_judge_eval, read_labelled
        from detoxrl.rewards.judge_eval import judge_eval as run_judge_eval
        from detoxrl.utils import console, write_json

        _quiet_libraries()
        cfg = _load(config, set_, run_dir)
        data = read_labelled(file, text_column, label_column, category_column,
                             positive_label or POSITIVE_LABELS)  # refused before any judge loads
        settings = cfg.reward.judges + cfg.eval.extra_judges
        if judge:
            settings = [j for j in settings if j.name == judge]
            if not settings:
                names = [j.name for j in cfg.reward.judges + cfg.eval.extra_judges]
                raise DetoxError(f"--judge {judge}: no such judge; the config has {names}")
        results = []
        for js in settings:
            res = run_judge_eval(build_judge(js, cfg), data)
            console.print(format_judge_eval(res))
            results.append(res)
        write_json(cfg.run_path / f"judge_eval_{Path(file).stem}.json", results)

    _guard(go)


@app.command("critique-eval")
def critique_eval(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
                  run_dir: Optional[Path] = RunDirOpt,
                  model: Optional[str] = typer.Option(None, help="Model to evaluate (default: the run's SFT policy)."),
                  labels: Optional[Path] = typer.Option(None, help="Labelled summaries (default: sft.tasks.eval_labels_file)."),
                  n: int = typer.Option(1000, help="Summaries per principle, half of them violating.")):
    """The model's self-critique as a classifier: accuracy and AUC of P("yes") per principle against
    labelled summaries; writes critique_eval_<model>.json in the run folder."""

    def go():
        from detoxrl.constitution.critique_eval import run_critique_eval

        _quiet_libraries()
        run_critique_eval(_load(config, set_, run_dir), model=model, labels_file=labels, n=n)

    _guard(go)


@app.command("ai-preferences")
def ai_preferences(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
                   run_dir: Optional[Path] = RunDirOpt,
                   n: int = typer.Option(1000, help="Prompts; two sampled responses each."),
                   critic: Optional[str] = typer.Option(None, help="The frozen critic (default: the self_critique "
                                                                  "judge's model, else the run's SFT policy)."),
                   principles: Optional[str] = typer.Option(None, help="Comma-separated principle ids (default: "
                                                                      "the judge's, else the constitution's)."),
                   margin: float = typer.Option(0.0, help="Violation scores this close make a tie (no pair)."),
                   out: Optional[Path] = typer.Option(None, help="Rankings file (default: ai_feedback/rankings.jsonl).")):
    """AI preference pairs: the policy samples two responses per prompt, the frozen model's self-critique
    prefers the one that violates the constitution less; writes a rankings file for train-rm (rankings mode)."""

    def go():
        from detoxrl.feedback.ai_preferences import run_ai_preferences

        _quiet_libraries()
        ids = [p.strip() for p in principles.split(",") if p.strip()] if principles else None
        run_ai_preferences(_load(config, set_, run_dir), n_prompts=n, critic=critic, principles=ids,
                           margin=margin, out=out)

    _guard(go)


@app.command("import-labels")
def import_labels(file: Path = typer.Argument(..., help="A Label Studio JSON export, or exported Argilla records."),
                  fmt: str = typer.Option(..., "--format", "-f", help="label-studio | argilla"),
                  output: Optional[Path] = typer.Option(None, "--output", "-o",
                                                        help="Rankings .jsonl to write (default: FILE's name + .rankings.jsonl)."),
                  question: Optional[str] = typer.Option(None, help="Argilla: the ranking question (default: the only one)."),
                  config: Optional[str] = typer.Option(None, "--config", "-c",
                                                       help="Config whose train_rm.special_labels to accept."),
                  set_: Optional[list[str]] = SetOpt):
    """Convert labels made in Label Studio (Ranker or Pairwise) or Argilla (a ranking question) to the
    rankings format that train-rm reads (docs/rankings.md)."""

    def go():
        from detoxrl.data.rankings import special_labels
        from detoxrl.feedback.labels_io import check_format
        from detoxrl.feedback.labels_io import import_labels as run_import
        from detoxrl.utils import console

        check_format(fmt)
        extra = _load(config, set_, None).train_rm.special_labels if (config or set_) else ()
        out, counts = run_import(file, fmt, output, special_labels(extra), question)
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if k not in ("rows", "special"))
        specials = "".join(f", {k} {v}" for k, v in counts["special"].items())
        console.print(f"import-labels: {counts['rows']} rankings{specials} ({shown}) → {out}", highlight=False)

    _guard(go)


@app.command("export-labels")
def export_labels(batch: Path = typer.Argument(..., help="A batch: labels/batch.jsonl ({id, prompt, completions, scores})."),
                  fmt: str = typer.Option(..., "--format", "-f", help="label-studio | argilla"),
                  output: Path = typer.Option(..., "--output", "-o", help="JSON file to write.")):
    """Write a batch of candidates as tasks Label Studio imports or records Argilla imports (docs/rankings.md)."""

    def go():
        from detoxrl.feedback.labels_io import export_labels as run_export
        from detoxrl.utils import console

        out, n = run_export(batch, fmt, output)
        console.print(f"export-labels: {n} items as {fmt} → {out}", highlight=False)

    _guard(go)


@app.command()
def score(texts: Optional[list[str]] = typer.Argument(None, help="Texts to score."),
          config: Optional[str] = typer.Option(None, "--config", "-c", help="Config whose reward to use."),
          set_: Optional[list[str]] = SetOpt, run_dir: Optional[Path] = RunDirOpt,
          file: Optional[Path] = typer.Option(None, "--file", "-f",
                                              help="More texts: .txt (one per line, or blocks between blank lines) or .jsonl/.csv/.tsv."),
          text_column: str = typer.Option("text", help="Column of --file that holds the texts (.jsonl/.csv)."),
          output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the scores as jsonl.")):
    """Score texts with the configured composite reward and explain every term: each judge's score,
    each dimension's penalty and the severity tier."""

    def go():
        from detoxrl.data.files import column, read_rows, read_texts
        from detoxrl.rewards.composite import CompositeReward
        from detoxrl.utils import write_jsonl

        items = list(texts or [])
        if file is not None:
            if file.suffix.lower() == ".txt":
                items += read_texts(file)
            else:
                items += [str(t) for t in column(read_rows(file), text_column, file)]
        if not items:
            raise DetoxError("nothing to score: give texts as arguments or --file")
        _quiet_libraries()
        cfg = _load(config, set_, run_dir)
        out = CompositeReward.from_config(cfg)(items)
        for i, text in enumerate(items):
            typer.echo(f"{text}\n  {out.explain(i)}")
        if output is not None:
            write_jsonl(output, ({"text": t, "reward": float(out.total[i]), "tier": out.tiers[i],
                                  "components": {k: float(v[i]) for k, v in out.components.items()}}
                                 for i, t in enumerate(items)))

    _guard(go)


@app.command()
def generate(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
             run_dir: Optional[Path] = RunDirOpt,
             constitution: Optional[Path] = typer.Option(None, help="Constitution file (default: constitution.path)."),
             prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="A prompt (repeatable)."),
             prompts: Optional[Path] = typer.Option(None, help="Prompts file: .jsonl (prompt or text column) or .txt."),
             wrap: bool = typer.Option(False, help="Fill --prompt and .txt prompts into data.prompt_template."),
             revision: Optional[str] = typer.Option(None, help="none | policy | resample | rewrite (default: constitution.revision)."),
             policy: Optional[str] = typer.Option(None, help="Policy folder or hub id (default: the trained policy, else policy.name_or_path)."),
             output: Optional[Path] = typer.Option(None, "--output", "-o", help="jsonl to write (default: {run_dir}/constitution/generations.jsonl)."),
             seed: Optional[int] = typer.Option(None, help="Sampling seed (default: the eval seed).")):
    """Generate responses, check each against the constitution's principles and revise violations."""

    def go():
        from detoxrl.constitution.generate import run_generate

        _quiet_libraries()
        cfg = _load(config, set_, run_dir)
        run_generate(cfg, prompts=prompt or [], prompts_file=prompts, wrap=wrap, constitution=constitution,
                     revision=revision, policy=policy, output=output, seed=seed, echo=typer.echo)

    _guard(go)


@app.command()
def standin(directory: Path = typer.Argument(..., help="Folder to write the stand-ins into (one sub-folder each)."),
            models: Optional[list[str]] = typer.Option(
                None, "--models", "-m",
                help="Stand-ins to write (repeatable or comma-separated): flan-t5-small, flan-t5-base, "
                     "roberta-hate-speech-dynabench-r4-target, toxic-bert, gpt2. Default: all."),
            data: Path = typer.Option(Path("../shared/data/dialogsum"), "--data",
                                      help="DialogSum folder whose text trains the tokenizers."),
            seed: int = typer.Option(0, help="Seed of the random weights.")):
    """Write full-size stand-ins: random models with the real configs and same-size tokenizers.

    Their outputs are meaningless; they measure what the real sizes cost and run the presets offline,
    e.g. --set policy.name_or_path=DIR/flan-t5-base."""

    def go():
        from detoxrl.data.loaders import dialogsum_texts
        from detoxrl.models.standin import resolve_names, write_standins

        names = resolve_names(models)
        texts = dialogsum_texts(data)  # refused (naming the folder) before anything is built
        _quiet_libraries()
        for r in write_standins(directory, names, texts, seed=seed):
            typer.echo(f"{r.path}: {r.spec.hub_id} stand-in, {r.parameters:,} parameters "
                       f"({r.parameters / 1e6:.1f}M), tokenizer {r.tokens:,} tokens ({r.fillers:,} fillers)")
        typer.echo(f"{Path(directory) / 'README.txt'}: outputs are meaningless (random weights)")

    _guard(go)


@app.command("config")
def show_config(config: Optional[str] = ConfigArg, set_: Optional[list[str]] = SetOpt,
                run_dir: Optional[Path] = RunDirOpt):
    """Print the resolved, validated configuration."""
    _guard(lambda: sys.stdout.write(_load(config, set_, run_dir).to_yaml()))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
