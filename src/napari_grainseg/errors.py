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
