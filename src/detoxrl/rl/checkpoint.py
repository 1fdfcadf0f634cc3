"""Checkpoints that resume exactly and can never be half-read.

A checkpoint is a folder ``checkpoints/step-000010/`` holding

- ``model.safetensors``  — every trainable-module tensor (LM, adapters, value head);
- ``optimizer.safetensors`` + the optimiser's non-tensor state inside ``state.json``;
- ``state.json``         — step, KL controller, score statistics, sampler, RNG states, counters.

It is written into a temporary folder and renamed into place in one step, so a folder named
``step-*`` is always complete; ``state.json`` is written last and carries a format version as a second
guard. Only safetensors and JSON are read back: nothing is unpickled.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from detoxrl.errors import CheckpointError
from detoxrl.utils import atomic_dir

FORMAT = 1
_STEP_RE = re.compile(r"^step-(\d+)$")


# ------------------------------------------------------------------------------ nested tensor state
def split_tensors(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Replace every tensor in a nested dict/list with a ``{"__tensor__": key}`` stub.

    Returns the JSON-able skeleton and the flat ``{key: tensor}`` map for safetensors.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            tensors[path] = x.detach().cpu().contiguous()
            return {"__tensor__": path}
        if isinstance(x, dict):
            return {"__dict__": [[walk(k, f"{path}.k{i}"), walk(v, f"{path}.{i}")]
                                 for i, (k, v) in enumerate(x.items())]}
        if isinstance(x, (list, tuple)):
            return {"__list__" if isinstance(x, list) else "__tuple__":
                    [walk(v, f"{path}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, (int, float, str, bool)) or x is None:
            return x
        raise CheckpointError(f"cannot checkpoint a value of type {type(x).__name__} at {path}")

    return walk(obj, prefix or "s"), tensors


def join_tensors(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_tensors`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {join_tensors(k, tensors): join_tensors(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            return [join_tensors(v, tensors) for v in skeleton["__list__"]]
        if "__tuple__" in skeleton:
            return tuple(join_tensors(v, tensors) for v in skeleton["__tuple__"])
    return skeleton


# -------------------------------------------------------------------------------------------- RNGs
def rng_state() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])


# ---------------------------------------------------------------------------------- save and load
def save_checkpoint(ckpt_root: Path, step: int, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict, state: dict, keep: int = 2) -> Path:
    """Write ``ckpt_root/step-NNNNNN`` atomically and keep only the newest ``keep`` checkpoints."""
    target = Path(ckpt_root) / f"step-{step:06d}"
    opt_skeleton, opt_tensors = split_tensors(optimizer_state, "opt")
    state_skeleton, state_tensors = split_tensors(state, "st")
    try:
        _write_checkpoint(target, model_state, opt_skeleton, opt_tensors, state_skeleton, state_tensors, step)
    except OSError as exc:
        previous = latest_checkpoint(ckpt_root)
        kept = f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"could not write checkpoint {target} ({exc.strerror or exc}); {kept}") from exc
    prune_checkpoints(ckpt_root, keep)
    return target


def _write_checkpoint(target: Path, model_state, opt_skeleton, opt_tensors, state_skeleton, state_tensors,
                      step: int) -> None:
    with atomic_dir(target) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()},
                  str(tmp / "model.safetensors"))
        save_file({**opt_tensors, **state_tensors} or {"_empty": torch.zeros(0)},
                  str(tmp / "optimizer.safetensors"))
        payload = {"format": FORMAT, "step": step, "optimizer": opt_skeleton, "state": state_skeleton}
        (tmp / "state.json").write_text(json.dumps(payload), encoding="utf-8")


def list_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    root = Path(ckpt_root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def is_complete(path: Path) -> bool:
    try:
        payload = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (payload.get("format") == FORMAT and (path / "model.safetensors").exists()
            and (path / "optimizer.safetensors").exists())


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """The newest complete checkpoint (temporary ``.step-*.tmp`` folders are never considered)."""
    for _, path in reversed(list_checkpoints(ckpt_root)):
        if is_complete(path):
            return path
    return None


def load_checkpoint(path: Path) -> tuple[int, dict[str, torch.Tensor], dict, dict]:
    """Return (step, model_state, optimizer_state, state) from safetensors + JSON only."""
    path = Path(path)
    for bad in ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"):
        if any(path.glob(bad)):
            raise CheckpointError(
                f"checkpoint {path} contains pickle files ({bad}); detoxrl loads safetensors only "
                "and refuses pickles, which can run code when loaded")
    if not is_complete(path):
        raise CheckpointError(f"checkpoint {path} is incomplete or from another format")
    payload = json.loads((path / "state.json").read_text(encoding="utf-8"))
    model_state = load_file(str(path / "model.safetensors"))
    extra = load_file(str(path / "optimizer.safetensors"))
    optimizer = join_tensors(payload["optimizer"], extra)
    state = join_tensors(payload["state"], extra)
    return int(payload["step"]), model_state, optimizer, state


def prune_checkpoints(ckpt_root: Path, keep: int) -> None:
    ckpts = list_checkpoints(ckpt_root)
    for _, path in ckpts[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
