"""Exceptions that carry a message meant for the person running an experiment."""


class SdpoError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""


class ConfigError(SdpoError):
    """The composed configuration is invalid (unknown key, wrong type, unknown option)."""


class ModelLoadError(SdpoError):
    """A model or tokenizer could not be obtained or loaded."""


class DataError(SdpoError):
    """Input data is unusable (no valid record, unreadable file, unknown schema)."""


class TaskNotAvailableError(SdpoError):
    """The requested task has no implementation in this version."""
