"""detoxrl: make language models less toxic with reinforcement learning from human feedback."""

__version__ = "0.1.0"

from detoxrl.config import Config, load_config  # noqa: E402
from detoxrl.errors import DetoxError  # noqa: E402

__all__ = ["Config", "DetoxError", "load_config", "__version__"]
