"""Layer sizes given by a user, checked once for every model: whole numbers >= 1, or one line that says
which one is wrong."""

from __future__ import annotations

from lifelong.errors import LifelongError, option


def whole(v) -> bool:
    """A whole number >= 1 (True is not a size)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def hidden_sizes(model: str, hidden, example: str) -> list[int]:
    """``hidden`` as a list of layer sizes; ``example`` shows a good value in the message."""
    if isinstance(hidden, int | str) or not hasattr(hidden, "__iter__"):
        raise LifelongError(
            f"{model}: {option('hidden')} must be a list of layer sizes such as {example} (got {hidden!r})"
        )
    sizes = list(hidden)
    if not sizes or not all(whole(h) for h in sizes):
        raise LifelongError(
            f"{model}: {option('hidden')} needs one or more whole layer sizes >= 1, such as {example} (got {hidden!r})"
        )
    return sizes
