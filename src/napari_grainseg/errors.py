"""Exceptions that carry a message meant for the user.

Every problem with the user's input (a missing or corrupt file, a 3-D stack, a
constant image, a bad pixel size...) raises :class:`InputError` with a one-line
message that says what is wrong and what to do. The CLI prints that line and
exits with code 2; the napari widgets show it as a notification.
"""

from __future__ import annotations


class GrainsegError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(GrainsegError, ValueError):
    """The user's input (file, image, parameter) cannot be used; the message says why."""


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """An exception's message on one line (whitespace collapsed), its type name if empty.

    ``limit``: longest result; longer messages end in "...".

    Examples
    --------
    >>> one_line(ValueError("bad\\n  value"))
    'bad value'
    """
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
