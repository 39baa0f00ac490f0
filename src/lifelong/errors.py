"""The one error type users see: a message that says what is wrong and how to fix it.

A message names a setting the way the caller named it: ``--batch-size`` on the command line,
``batch_size`` from Python (``option("batch_size")``). The CLI switches to flag names with
``cli_names()``; library code never writes a flag by hand.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings

_CLI = contextvars.ContextVar("lifelong_cli_names", default=False)


def option(name: str) -> str:
    """A setting as the caller spells it: ``--batch-size`` under the CLI, ``batch_size`` from Python."""
    name = name.lstrip("-").replace("-", "_")
    return "--" + name.replace("_", "-") if _CLI.get() else name


@contextlib.contextmanager
def cli_names():
    """Inside this block, messages name settings as command-line flags."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


class LifelongError(Exception):
    """A problem with the user's input or data. The CLI prints it as one line and exits non-zero."""


class LifelongWarning(UserWarning):
    """Something the user should know before trusting a run (it still runs). The CLI prints one line."""


def warn(message: str) -> None:
    warnings.warn(message, LifelongWarning, stacklevel=2)


class DivergedError(LifelongError):
    """Training produced a non-finite loss; the run is recorded as failed."""

    def __init__(self, task: int, epoch: int, value: float):
        self.task, self.epoch, self.value = task, epoch, value
        super().__init__(
            f"training diverged: the loss became {value} in task {task + 1}, epoch {epoch + 1}; "
            f"lower {option('lr')} or the method's regularisation strength and run again"
        )
