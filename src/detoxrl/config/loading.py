"""Reading a config: YAML file (or a packaged preset by name), dotted overrides, validation.

Every problem raises :class:`~detoxrl.errors.ConfigError` whose message names the file and the key's
full path.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from detoxrl.config.run_config import Config
from detoxrl.errors import ConfigError

PACKAGE_CONFIGS = Path(__file__).parent.parent / "configs"
DEFAULT_CONFIG = PACKAGE_CONFIGS / "default.yaml"


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML (safely)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.path=value")
    key, raw = override.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. "{run_dir}/x"): take it as a plain string
    node: Any = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            try:
                node = node[int(part)]
                continue
            except (ValueError, IndexError):
                raise ConfigError(f"override {key}: {'.'.join(parts[: i + 1])} is not a valid index") from None
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {'.'.join(parts[:i])} is not a section")
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = value
        except (ValueError, IndexError):
            raise ConfigError(f"override {key}: {last} is not a valid index") from None
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override {key}: {'.'.join(parts[:-1])} is not a section")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    run_dir: str | Path | None = None,
) -> Config:
    """Read a YAML config (default: the embedded testbed), apply overrides, validate."""
    cfg_path = Path(path) if path else DEFAULT_CONFIG
    if path and not cfg_path.exists() and (PACKAGE_CONFIGS / f"{path}.yaml").exists():
        cfg_path = PACKAGE_CONFIGS / f"{path}.yaml"  # a preset by name: `detoxrl run flan-t5-dialogsum`
    data = read_yaml(cfg_path)
    data = copy.deepcopy(data)
    data.setdefault("name", cfg_path.stem)
    for ov in overrides:
        apply_override(data, ov)
    if run_dir is not None:
        data["run_dir"] = str(run_dir)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, str(cfg_path))) from None


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    try:
        return Config.model_validate(copy.deepcopy(data))
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def resolve_constitution_path(path: str | Path, cfg: Config | None = None) -> Path:
    """The constitution file: ``{run_dir}`` substituted; a missing ``configs/<name>.yaml`` (or a bare
    name) falls back to the configs packaged with detoxrl."""
    raw = str(path)
    p = cfg.path(raw) if cfg is not None else Path(raw)
    if p.is_file():
        return p
    candidates = [PACKAGE_CONFIGS / p.name]
    if not p.suffix:
        candidates.insert(0, PACKAGE_CONFIGS / f"{p.name}.yaml")
    if p.parent in (Path("."), Path("configs")):
        for c in candidates:
            if c.is_file():
                return c
    raise ConfigError(f"constitution file {p} does not exist")
