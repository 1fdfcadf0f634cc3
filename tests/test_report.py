"""The HTML report and the model card, built from a synthetic run folder (metrics.jsonl, eval.json and
eval_table.csv made by the same functions the stages use), plus a render check in headless Chromium."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from detoxrl.config import config_from_dict
from detoxrl.evaluation.model_card import write_model_card
from detoxrl.evaluation.report import build_report, read_metrics
from detoxrl.evaluation.summary import json_clean, summarize
from detoxrl.evaluation.table import build_table_rows, write_eval_table
from detoxrl.utils import write_json

CHROMIUM = Path("/usr/bin/chromium")


def make_cfg(run_dir: Path, **over):
    data = {
        "name": "synthetic", "run_dir": str(run_dir), "seed": 0,
        "policy": {"name_or_path": "google/flan-t5-base", "kind": "seq2seq"},
        "data": {"source": "knkarthick/dialogsum", "format": "hub"},
        "reward": {"judges": [{"name": "meta-hate", "preset": "meta-hate"}]},
        "eval": {"n_prompts": 60, "bootstrap": 200,
                 "extra_judges": [{"name": "profanity-check", "type": "profanity"}]},
        "report": {"examples": 3},
    }
    data.update(over)
    return config_from_dict(data)


class _P:
    def __init__(self, i: int):
        self.id = f"test_{i}"
        self.text = f"#Person1#: Hello number {i}, <b>bold</b> & more.\n#Person2#: Fine, thanks."
        self.prompt = "Summarize: " + self.text
        self.references = [f"Person1 greets person {i}.", "They talk."]


def write_metrics(run_dir: Path, steps: int = 40, constitution: bool = True, curriculum: bool = True,
                  probes: bool = True) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(steps):
        r = {"step": s, "reward/mean": 0.5 + 2 * s / steps + rng.normal(0, 0.1), "reward/std": 0.6,
             "reward/judge/meta-hate": 0.4 + s / steps, "reward/dim/hate": -0.3 * math.exp(-s / 10),
             "reward/severity_penalty": -0.1 * math.exp(-s / 5),
             "kl/mean": 0.2 * s ** 0.5, "kl/coef": 0.2 * (1 - s / (3 * steps)),
             "policy/entropy": 2.0 - s / steps, "policy/clipfrac": 0.1 + rng.uniform(0, 0.05),
             "policy/approx_kl": 0.01 + rng.uniform(0, 0.01), "value/loss": 1.0 / (1 + s),
             "value/explained_variance": min(0.9, s / steps), "response/length": 20 + rng.normal(0, 2),
             "perf/tokens_per_s": 900 + rng.normal(0, 30)}
        if constitution:
            r["constitution/no-insults"] = max(0.0, 0.5 - s / steps)
            r["constitution/respect-groups"] = 0.2 * math.exp(-s / 8)
        if curriculum:
            r["curriculum/stage"] = min(2, s // 14)
            r["curriculum/competence"] = min(1.0, 0.2 + s / steps)
        if probes and s % 10 == 9:  # the probe's figures, on the steps it is taken
            r.update({"probe/reward_mean": 0.4 + s / steps, "probe/toxic_rate_trained": 0.2 - s / (4 * steps),
                      "probe/toxic_rate_heldout": 0.25 - s / (5 * steps), "probe/rougeL": 0.4, "probe/n": 64})
        rows.append(r)
    path = run_dir / "ppo" / "metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 99, "reward/me', encoding="utf-8")
    return path


def write_eval(cfg, n: int = 60) -> dict:
    rng = np.random.default_rng(1)
    prompts = [_P(i) for i in range(n)]
    judges = [{"name": "meta-hate", "type": "hf", "model": "facebook/roberta-hate-speech-dynabench-r4-target",
               "threshold": 0.5, "trained_against": True},
              {"name": "profanity-check", "type": "profanity", "model": "alt-profanity-check", "threshold": 0.5,
               "trained_against": False}]
    tb = rng.beta(1, 4, size=(1, n))
    ta = np.clip(tb - rng.uniform(0, 0.15, size=(1, n)), 0, 1)
    ta[0, :3] = np.clip(tb[0, :3] + 0.3, 0, 1)  # a few got worse
    pb, pa = rng.beta(1, 8, size=(1, n)), rng.beta(1, 10, size=(1, n))
    judged_b = {"meta-hate": {"toxicity": tb, "score": np.log((1 - tb + 1e-4) / (tb + 1e-4)), "tox_hate": tb},
                "profanity-check": {"toxicity": pb, "score": 1 - pb, "tox_profanity": pb}}
    judged_a = {"meta-hate": {"toxicity": ta, "score": np.log((1 - ta + 1e-4) / (ta + 1e-4)), "tox_hate": ta},
                "profanity-check": {"toxicity": pa, "score": 1 - pa, "tox_profanity": pa}}
    texts_b = [[f"Person1 says hello to {i} <script>alert(1)</script>" for i in range(n)]]
    texts_a = [[f"Person1 greets person {i}." for i in range(n)]]
    lens = np.full((1, n), 12.0)
    res = summarize(cfg=cfg, judges=judges, primary="meta-hate", prompts=prompts, samples=1,
                    decoding={"do_sample": False, "max_new_tokens": 40}, seed=0,
                    before_model="google/flan-t5-base", after_model=str(cfg.run_path / "policy"),
                    texts_before=texts_b, texts_after=texts_a, lengths_before=lens, lengths_after=lens,
                    judged_before=judged_b, judged_after=judged_a, kl=rng.uniform(0, 3, size=n),
                    timing={"generation_s": 1.0, "kl_s": 0.5, "judging_s": 0.2, "total_s": 2.0})
    res = json_clean(res)
    write_json(cfg.run_path / "eval.json", res)
    thresholds = {j["name"]: j["threshold"] for j in judges}
    rows = build_table_rows(prompts, [j["name"] for j in judges], "meta-hate", texts_b, texts_a, lens, lens,
                            judged_b, judged_a, thresholds)
    write_eval_table(cfg.run_path / "eval_table.csv", rows, [j["name"] for j in judges])
    return res


@pytest.fixture
def full_run(tmp_path):
    cfg = make_cfg(tmp_path / "run")
    write_metrics(cfg.run_path)
    ev = write_eval(cfg)
    return cfg, ev


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


# ------------------------------------------------------------------------------------------ report
def test_report_and_card_name_fingerprints_and_flag_an_evaluation_of_another_policy(full_run):
    from detoxrl.stages import fingerprint
    from detoxrl.stages import report as report_stage

    cfg, ev = full_run
    policy = cfg.path(cfg.ppo.output_dir)
    policy.mkdir(parents=True, exist_ok=True)
    (policy / "config.json").write_text("{}")
    fingerprint.write(policy / "config.json", "ppo", {"hash": "b" * 64})
    ev["made_from"] = {"policy": "a" * 64, "reference": None}
    write_json(cfg.run_path / "eval.json", ev)
    prov = report_stage.provenance(cfg, ev)
    assert prov["fingerprints"]["policy (ppo)"] == "b" * 64
    assert len(prov["warnings"]) == 1 and "a" * 64 in prov["warnings"][0]
    page = build_report(cfg, provenance=prov).read_text(encoding="utf-8")
    assert '<section id="provenance">' in page and "Stale:" in page and "b" * 64 in page
    ev["made_from"]["policy"] = "b" * 64  # the evaluation of the policy saved now: no warning
    assert report_stage.provenance(cfg, ev)["warnings"] == []


def test_report_has_every_section_and_plots(full_run):
    cfg, ev = full_run
    out = build_report(cfg)
    assert out == cfg.run_path / "report.html"
    page = out.read_text(encoding="utf-8")
    imgs = _images(page)
    # reward, per judge, components, KL, policy, value, length/speed, probes, constitution x2, curriculum,
    # 2 histograms, toxic rate per dimension
    assert len(imgs) == 14
    assert all(b.startswith(b"\x89PNG\r\n\x1a\n") for b in imgs)
    assert "not run" not in page
    for anchor in ("summary", "metrics", "breakdown", "training", "probes", "constitution", "curriculum", "distributions",
                   "examples", "provenance", "config"):
        assert f'<section id="{anchor}">' in page
    # the metrics table shows the CIs from eval.json, the headline the verdict
    lo, hi = ev["before"]["toxicity_ci95"]
    assert f"[{lo:.4f}, {hi:.4f}]" in page
    assert ev["paired"]["meta-hate"]["verdict"] in page
    assert "held-out judge" in page and "profanity-check" in page
    # per dimension: meta-hate reports hate, profanity-check profanity; nobody harassment
    hate = ev["per_dimension"]["all"]["hate"]["before"]
    assert f"{hate['toxic_rate']:.3f} <span class=\"ci\">[{hate['toxic_rate_ci95'][0]:.3f}" in page
    assert "Absent (no judge of the group reports the dimension)" in page and "Over-correction" in page
    # examples: most improved and most worsened, texts escaped, never executable
    assert "Most improved" in page and "Most worsened" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    # the config is embedded; nothing is loaded from elsewhere
    assert "flan-t5-base" in page and "bootstrap: 200" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "Content-Security-Policy" in page
    assert "1 unreadable line(s)" in page  # the torn last line of metrics.jsonl


def test_report_degrades_gracefully_without_inputs(tmp_path):
    cfg = make_cfg(tmp_path / "empty")
    page = build_report(cfg).read_text(encoding="utf-8")
    assert page.count("not run") == 10 - 1  # every section but the configuration
    assert _images(page) == []
    assert "<pre>" in page


def test_report_without_constitution_and_curriculum(tmp_path):
    cfg = make_cfg(tmp_path / "run")
    write_metrics(cfg.run_path, constitution=False, curriculum=False, probes=False)
    page = build_report(cfg).read_text(encoding="utf-8")
    assert "Constitution: not run" in page and "Curriculum: not run" in page and "Probes: not run" in page
    assert "Evaluation: not run" in page
    assert len(_images(page)) == 7


def test_report_uniform_sampler_keys_without_curriculum(tmp_path):
    # a run without curriculum logs curriculum/competence = 1 from its uniform sampler: shown as not run
    cfg = make_cfg(tmp_path / "run")
    path = write_metrics(cfg.run_path, constitution=False, curriculum=False)
    rows, _ = read_metrics(path)
    path.write_text("".join(json.dumps({**r, "curriculum/competence": 1.0}) + "\n" for r in rows), encoding="utf-8")
    page = build_report(cfg).read_text(encoding="utf-8")
    assert "curriculum.enabled is false" in page
    cfg_on = make_cfg(tmp_path / "run", curriculum={"enabled": True})
    assert "Curriculum: not run" not in build_report(cfg_on).read_text(encoding="utf-8")


def _with_tier_shares(path: Path) -> None:
    """Add the tier shares a tier curriculum logs: clean only, then ambiguous joining, then harmful."""
    rows, _ = read_metrics(path)
    for r in rows:
        s = r["step"]
        harmful = 0.0 if s < 20 else 0.25
        ambiguous = 0.0 if s < 10 else 0.25
        r.update({"curriculum/share_clean": 1.0 - harmful - ambiguous, "curriculum/share_ambiguous": ambiguous,
                  "curriculum/share_harmful": harmful, "curriculum/open_level": int(s // 10)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_report_plots_the_tier_mix(tmp_path):
    from detoxrl.evaluation.report_sections import curriculum_section

    cfg = make_cfg(tmp_path / "run", curriculum={"enabled": True, "difficulty": "tier", "pacing": "tiers"})
    path = write_metrics(cfg.run_path, constitution=False, probes=False)
    rows, _ = read_metrics(path)
    assert "tier mix" not in curriculum_section(rows)  # no shares logged: no figure
    _with_tier_shares(path)
    rows, _ = read_metrics(path)
    html = curriculum_section(rows)
    assert len(_images(html)) == 2 and 'alt="tier mix per PPO step"' in html
    # the uniform arm of an ablation (curriculum off, tiers known) shows its tier mix, not "not run"
    off = curriculum_section([{k: v for k, v in r.items() if k != "curriculum/stage"} for r in rows], enabled=False)
    assert "Curriculum: not run" not in off and len(_images(off)) == 1 and "enabled is false" in off
    card = write_model_card(cfg, cfg.path(cfg.ppo.output_dir), None).read_text(encoding="utf-8")
    assert ("- **Curriculum:** on (tiers pacing) over three tiers clean → ambiguous → harmful (mild, then severe): "
            "from the data's `tier` and `grade` columns where present, else by the judges' toxicity of the prompt "
            "(clean below 0.1, ambiguous below 0.5) and severity (severe from 0.8)") in card


def test_report_survives_a_corrupt_eval_json(tmp_path):
    cfg = make_cfg(tmp_path / "run")
    (cfg.run_path).mkdir(parents=True)
    (cfg.run_path / "eval.json").write_text("{not json", encoding="utf-8")
    page = build_report(cfg).read_text(encoding="utf-8")
    assert "eval.json could not be read" in page


def _ppo_record(cfg, stop: dict, warnings: list[dict]) -> None:
    """What the PPO stage leaves: detoxrl.json beside the policy and ppo/warnings.jsonl."""
    policy = cfg.path(cfg.ppo.output_dir)
    policy.mkdir(parents=True, exist_ok=True)
    write_json(policy / "detoxrl.json", {"saved_by": "detoxrl", "steps": 40, "steps_done": stop["step"],
                                         "stop": stop, "probe_warnings": warnings})
    (cfg.run_path / "ppo" / "warnings.jsonl").write_text("".join(json.dumps(w) + "\n" for w in warnings))


def test_report_shows_the_probes_the_reward_hacking_warning_and_why_ppo_stopped(full_run):
    cfg, _ = full_run
    page = build_report(cfg).read_text(encoding="utf-8")
    assert 'alt="probe figures per step"' in page
    assert "No reward-hacking warning" in page and "Stopped after" not in page
    warning = {"step": 30, "kind": "reward_hacking",
               "message": "possible reward hacking over the probes of steps 10–30: the trained-against reward "
                          "rose 0.600 → 1.100 while ROUGE-L fell 0.400 → 0.300"}
    _ppo_record(cfg, {"reason": "reached stop_at_reward 2.3: moving mean 2.31 over 10 steps at step 37",
                      "step": 37}, [warning])
    page = build_report(cfg).read_text(encoding="utf-8")
    section = page[page.index('<section id="probes">'):]
    section = section[: section.index("</section>")]
    assert "Stopped after step 37:" in section and "moving mean 2.31 over 10 steps at step 37" in section
    assert '<p class="warn"><strong>Warning at step 30:</strong> possible reward hacking' in section
    assert "No reward-hacking warning" not in section and len(_images(section)) == 1


def test_report_shows_why_ppo_stopped_without_probes(tmp_path):
    cfg = make_cfg(tmp_path / "run")
    write_metrics(cfg.run_path, probes=False)
    _ppo_record(cfg, {"reason": "ppo.steps reached", "step": 40}, [])
    page = build_report(cfg).read_text(encoding="utf-8")
    assert "Stopped after step 40:</strong> ppo.steps reached" in page and "No probes were taken" in page
    assert "Probes: not run" not in page


def test_model_card_says_how_ppo_stopped_and_what_the_probe_warned(tmp_path):
    cfg = make_cfg(tmp_path / "run", ppo={"probe_every": 10, "probe_prompts": 32, "stop_at_reward": 2.3})
    write_metrics(cfg.run_path)
    _ppo_record(cfg, {"reason": "reached stop_at_reward 2.3: moving mean 2.31 over 10 steps at step 37",
                      "step": 37}, [{"step": 30, "kind": "reward_hacking", "message": "possible reward hacking"}])
    text = write_model_card(cfg, cfg.path(cfg.ppo.output_dir), None).read_text(encoding="utf-8")
    assert ("- **Stopped:** after step 37 (at most 40): reached stop_at_reward 2.3: moving mean 2.31 over 10 "
            "steps at step 37") in text
    assert "- **Probe:** every 10 steps, 32 held-out prompts" in text
    assert "- **Probe warnings (1):** step 30: possible reward hacking" in text


def test_read_metrics_skips_torn_lines(tmp_path):
    path = write_metrics(tmp_path, steps=5)
    rows, bad = read_metrics(path)
    assert len(rows) == 5 and bad == 1


# --------------------------------------------------------------------------------------- model card
def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    end = text.index("\n---\n", 4)
    return yaml.safe_load(text[4:end])


def test_model_card_front_matter_and_body(full_run, tmp_path):
    cfg, ev = full_run
    policy = tmp_path / "policy"
    policy.mkdir()
    path = write_model_card(cfg, policy, ev)
    assert path == policy / "README.md"
    text = path.read_text(encoding="utf-8")
    meta = _front_matter(text)
    assert meta["base_model"] == "google/flan-t5-base"
    assert meta["library_name"] == "transformers"
    assert meta["tags"][:4] == ["detoxrl", "rlhf", "ppo", "detoxification"]
    assert meta["datasets"] == ["knkarthick/dialogsum"]
    assert meta["license"] == "apache-2.0"
    assert meta["pipeline_tag"] == "text2text-generation"
    assert "meta-hate" in text and "profanity-check" in text
    assert "facebook/roberta-hate-speech-dynabench-r4-target" in text
    assert f"{ev['before']['toxicity_mean']:.4f}" in text
    assert "| toxicity mean" in text
    assert "- **hate:** " in text and "- **profanity:** " in text and "**harassment:**" not in text


def test_model_card_for_a_local_testbed_model_without_eval(tmp_path):
    cfg = make_cfg(tmp_path / "run", policy={"name_or_path": "{run_dir}/sft"},
                   data={"source": "testbed"}, testbed={})
    policy = tmp_path / "policy"
    policy.mkdir()
    text = write_model_card(cfg, policy, None).read_text(encoding="utf-8")
    meta = _front_matter(text)
    assert "base_model" not in meta  # a local folder is no hub id; it is named in the text instead
    assert "datasets" not in meta
    assert meta["tags"][:4] == ["detoxrl", "rlhf", "ppo", "detoxification"]
    assert "sft" in text and "testbed" in text.lower()
    assert "not evaluated" in text.lower()
    assert meta["license"] == "apache-2.0"  # built from scratch by the project


def test_model_card_pipeline_tag_for_decoder_models(tmp_path):
    from detoxrl.evaluation.model_card import front_matter, is_hub_id

    cfg = make_cfg(tmp_path / "run", policy={"name_or_path": "openai-community/gpt2"})
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "config.json").write_text('{"is_encoder_decoder": false}', encoding="utf-8")
    meta = front_matter(cfg, policy)
    assert meta["pipeline_tag"] == "text-generation" and meta["license"] == "mit"
    assert is_hub_id("gpt2") and not is_hub_id("runs/default/sft") and not is_hub_id(str(policy))


# ------------------------------------------------------------------------------------------ browser
HARNESS = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  window.__errors.push('error: ' + (e.message || t.src || t.href || t.tagName || 'resource'));
}, true);
window.addEventListener('unhandledrejection', function (e) { window.__errors.push('rejection: ' + e.reason); });
document.addEventListener('securitypolicyviolation', function (e) {
  if (e.violatedDirective.indexOf('script-src') !== 0) window.__errors.push('csp: ' + e.violatedDirective + ' ' + e.blockedURI);
});
var __ce = console.error; console.error = function () {
  window.__errors.push('console: ' + Array.prototype.join.call(arguments, ' ')); __ce.apply(console, arguments);
};
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0); })
                .map(function (i) { return i.alt; });
  var res = performance.getEntriesByType('resource').map(function (r) { return r.name; })
                .filter(function (n) { return n.indexOf('data:') !== 0; });
  var out = document.createElement('pre');
  out.id = '__render_status';
  out.textContent = JSON.stringify({images: imgs.length, bad: bad, errors: window.__errors, resources: res,
    sections: document.querySelectorAll('section').length, title: document.title,
    minWidth: Math.min.apply(null, imgs.map(function (i) { return i.naturalWidth; }))});
  document.body.appendChild(out);
});
</script>"""


def render_status(page_path: Path, tmp_path: Path) -> dict:
    """Open a copy of the page, with the test harness added, in headless Chromium; return its status."""
    page = page_path.read_text(encoding="utf-8")
    # let the harness (and only inline scripts) run; every other directive of the policy stays
    csp = re.search(r'content="(default-src[^"]*)"', page).group(1)
    page = page.replace(csp, csp + "; script-src 'unsafe-inline'", 1)
    page = page.replace("<head>", "<head>\n" + HARNESS, 1)
    probe = tmp_path / "probe.html"
    probe.write_text(page, encoding="utf-8")
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
           "--dump-dom", probe.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="__render_status">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no status in the dumped DOM (exit {proc.returncode}): {proc.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(m.group(1)))


@pytest.mark.browser
def test_report_renders_in_headless_chromium(full_run, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium not installed at /usr/bin/chromium (Debian package `chromium`)")
    cfg, _ = full_run
    status = render_status(build_report(cfg), tmp_path)
    assert status["errors"] == []
    assert status["resources"] == []
    assert status["images"] == 14 and status["bad"] == []
    assert status["minWidth"] > 100
    assert status["sections"] == 11
    assert status["title"] == "detoxrl report — synthetic"


@pytest.mark.browser
def test_render_harness_catches_a_broken_image(full_run, tmp_path):
    """The render check itself works: a corrupt image and a blocked remote one are reported."""
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium not installed at /usr/bin/chromium (Debian package `chromium`)")
    cfg, _ = full_run
    page = build_report(cfg)
    text = page.read_text(encoding="utf-8")
    text = text.replace("</main>", '<img src="data:image/png;base64,AAAA" alt="corrupt">'
                                   '<img src="https://example.invalid/x.png" alt="remote"></main>', 1)
    page.write_text(text, encoding="utf-8")
    status = render_status(page, tmp_path)
    assert set(status["bad"]) == {"corrupt", "remote"}
    assert any("csp" in e for e in status["errors"])
    assert shutil.which(str(CHROMIUM))
