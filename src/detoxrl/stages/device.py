"""One rule for every stage's device and accelerate set-up.

A stage runs on the accelerator's device: CUDA when torch sees a GPU, else the CPU. Under
``accelerate launch`` the process group gets ``ppo.collective_timeout_s`` as its time-out, so a run whose
processes fall out of step fails with an error instead of hanging. accelerate keeps one process state
per process, so the first stage of a ``detoxrl run`` sets it up for all the others.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs

from detoxrl.config import Config


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
