"""The base class of errors the user can fix: bad input, not a bug.

``main.py`` and ``python -m ghostnets_jax.export`` print a :class:`UserError` as one line naming
the problem and the fix, without a traceback, and exit with status 2; any other exception keeps
its traceback. Each subclass also derives from the built-in error it refines (``ValueError``,
``FileNotFoundError``, ``OSError``, ...), so ``except ValueError`` callers keep working.
"""


class UserError(Exception):
  """An error caused by the input (a config, a path, a file) whose message says how to fix it."""


EXIT_CODE = 2   # the exit status of a command stopped by a UserError


class ConfigError(UserError, ValueError):
  """Config values that do not work (together); the message names the field to change."""


class PathNotFoundError(UserError, FileNotFoundError):
  """A path that the config or a flag names does not exist."""
