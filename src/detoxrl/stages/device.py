"""One rule for every stage's device and accelerate set-up.

A stage runs on the accelerator's device: CUDA when torch sees a GPU, else the CPU. Under
``accelerate launch`` the process group gets ``ppo.collective_timeout_s`` as its time-out, so a run whose
processes fall out of step fails with an error instead of hanging. accelerate keeps one process state
per process, so the first stage of a ``detoxrl run`` sets it up for all the others.

The precision settings' ``auto`` (``policy.dtype``, ``ppo.mixed_precision``) resolves on that device:
bfloat16 only where it computes it natively (:mod:`detoxrl.models.precision`), and float32 weights under
a backend that shards the model (DeepSpeed, FSDP), which keeps its own low-precision copies.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs

from detoxrl.config import Config
from detoxrl.models.loading import DTYPES
from detoxrl.models.precision import Precision, resolve_dtype, resolve_mixed_precision
from detoxrl.rl.fastpaths import PLAIN_DISTRIBUTED


def stage_accelerator(cfg: Config) -> Accelerator:
    """The accelerator every stage uses (its ``device``, its process index and count)."""
    timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.ppo.collective_timeout_s))
    return Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[timeout])


def stage_device(cfg: Config) -> torch.device:
    """The device a single-process stage (SFT, reward-model training, eval) computes on."""
    return stage_accelerator(cfg).device


def is_main_process() -> bool:
    """Whether this is the process that writes shared files (rank 0 under ``accelerate launch``)."""
    return int(os.environ.get("RANK", "0")) == 0


def policy_precision(cfg: Config, acc: Accelerator | None = None) -> Precision:
    """``policy.dtype`` resolved for this process's device (``auto``: see the module's docstring)."""
    acc = acc or stage_accelerator(cfg)
    return resolve_dtype(cfg.policy.dtype, acc.device, sharded=acc.distributed_type not in PLAIN_DISTRIBUTED)


def run_precision(cfg: Config) -> dict[str, Precision]:
    """Every precision setting of the run resolved on this process's device, by key: ``policy.dtype``,
    ``sft.base_model.dtype`` (when SFT starts from another model) and ``ppo.mixed_precision``."""
    acc = stage_accelerator(cfg)
    dtype = policy_precision(cfg, acc)
    out = {dtype.key: dtype}
    if cfg.sft.enabled and cfg.sft.base_model is not None:
        base = resolve_dtype(cfg.sft.base_model.dtype, acc.device, key="sft.base_model.dtype")
        out[base.key] = base
    mixed = resolve_mixed_precision(cfg.ppo.mixed_precision, acc.device, weights=DTYPES[dtype.choice])
    out[mixed.key] = mixed
    return out
