"""Errors ragtune raises on bad input. Each message names the file, line, field or parameter at fault."""


class RagtuneError(Exception):
    """Base class: anything ragtune reports to a user as a clean error rather than a traceback."""


class ConfigError(RagtuneError, ValueError):
    pass


class DataError(RagtuneError, ValueError):
    pass


class BackendError(RagtuneError, RuntimeError):
    """A model or service backend failed, or an optional dependency is missing."""
