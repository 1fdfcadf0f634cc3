"""Errors a user can cause. Each carries one clear message naming the file, row or key."""


class DetoxError(Exception):
    """Base class: the CLI prints these as one line and exits with status 2, without a traceback."""


class ConfigError(DetoxError):
    """A bad configuration file or override."""


class DataError(DetoxError):
    """A bad dataset file or row."""


class ModelError(DetoxError):
    """A model folder or hub id that cannot be loaded, or a label it does not have."""


class CheckpointError(DetoxError):
    """A checkpoint that is missing, incomplete or unsafe to load."""


class TrainingError(DetoxError):
    """Training cannot go on (for example too many steps skipped for bad numbers)."""
