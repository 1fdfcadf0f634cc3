"""``python _slow_checkpoint.py DELAY ARGS...``: the ``detoxrl`` command with every checkpoint write held
open for DELAY seconds after its model file, so the kill tests in test_resume.py can strike mid-write."""

import sys
import time

import detoxrl.rl.checkpoint as ckpt
from detoxrl.cli import app

delay = float(sys.argv.pop(1))
real_save = ckpt.save_file


def slow_save(tensors, path, *args, **kwargs):
    real_save(tensors, path, *args, **kwargs)
    if path.endswith("model.safetensors"):
        time.sleep(delay)


ckpt.save_file = slow_save
app(prog_name="detoxrl")
