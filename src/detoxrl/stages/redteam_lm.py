"""The red LM of the ``redteam`` stage: ``redteam.red_lm.model`` (any causal LM), or on the testbed a tiny
GPT-2 trained on the training dialogues and kept in ``{run_dir}/red-lm`` (trained the first time it is
needed; delete the folder to train it again)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from detoxrl.config import Config, GenerationSettings, KLSettings, ModelSettings, PPOSettings
from detoxrl.data.loaders import load_examples
from detoxrl.errors import ConfigError, ModelError
from detoxrl.models.loading import load_policy_model
from detoxrl.redteam.cases import Attempt
from detoxrl.redteam.red_lm import RedLM, red_lm_attack
from detoxrl.redteam.rl import rl_attack
from detoxrl.redteam.target import Target
from detoxrl.testbed.red_lm import train_red_lm
from detoxrl.utils import console


def red_lm_dir(cfg: Config) -> Path:
    """The red LM's folder or hub id; on the testbed without ``red_lm.model``, ``{run_dir}/red-lm`` (trained
    here when missing)."""
    rl = cfg.redteam.red_lm
    if rl.model:
        return Path(cfg.resolve(rl.model))
    if cfg.data.source != "testbed":
        raise ConfigError("redteam.red_lm.model: name a causal language model (hub id or folder) for the "
                          "zero_shot and few_shot methods; only the testbed trains its own")
    out = cfg.path("{run_dir}/red-lm")
    if not (out / "config.json").exists():
        texts = [e.text for e in load_examples(cfg, cfg.data.train_split).examples]
        console.print(f"redteam: training the testbed's red LM on {len(texts)} dialogues → {out}")
        train_red_lm(texts, cfg.path("{run_dir}/testbed/tokenizer"), out, steps=rl.train_steps,
                     seed=cfg.seed_for(cfg.redteam.seed))
    return out


def load_red_lm(cfg: Config, device) -> RedLM:
    rl = cfg.redteam.red_lm
    where = red_lm_dir(cfg)
    try:
        tok = AutoTokenizer.from_pretrained(str(where))
        model = AutoModelForCausalLM.from_pretrained(str(where)).to(device).eval()
    except (OSError, ValueError) as exc:
        raise ModelError(f"redteam.red_lm.model: could not load a causal LM from {where}: {exc}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return RedLM(model, tok, rl.prompt, rl.separator, rl.max_new_tokens, rl.temperature, rl.top_p)


def run_rl(cfg: Config, target: Target, seed: int) -> list[Attempt]:
    """Method ``rl``: PPO on the red LM, rewarded by the target's toxicity (detoxrl.redteam.rl)."""
    rt = cfg.redteam
    where = red_lm_dir(cfg)
    device = next(target.policy.model.parameters()).device
    red = load_policy_model(ModelSettings(name_or_path=str(where), kind="causal"), device=str(device))
    settings = PPOSettings(steps=max(1, rt.budget // rt.batch), batch_size=rt.batch,
                           mini_batch_size=min(rt.rl.mini_batch_size, rt.batch), ppo_epochs=rt.rl.ppo_epochs,
                           learning_rate=rt.rl.learning_rate, kl=KLSettings(init_coef=rt.rl.kl_coef, adaptive=False),
                           generation=GenerationSettings(max_new_tokens=rt.red_lm.max_new_tokens, do_sample=True,
                                                         top_k=0, top_p=1.0), seed=seed)
    attempts, _ = rl_attack(red, target, rt.budget, settings, start=rt.red_lm.prompt, rule=rt.success, seed=seed)
    return attempts


def run_red_lm(cfg: Config, target: Target, seed: int, method: str,
               found: Sequence[tuple[str, float]] = ()) -> list[Attempt]:
    rt = cfg.redteam
    device = next(target.policy.model.parameters()).device
    red = load_red_lm(cfg, device)
    return red_lm_attack(red, target, method, rt.budget, batch=rt.batch, shots=rt.red_lm.shots,
                         success=rt.success, seed=seed, found=found)
