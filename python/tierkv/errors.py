"""Exceptions named after tierkv's status codes.

Every failed call raises a subclass of :class:`Error`; ``code`` is the status name
(``"NotFound"``) and ``message`` the daemon's (or the library's) explanation.
Arguments this package refuses before calling the library raise
:class:`InvalidArgument` too.
"""
from __future__ import annotations

import builtins
from typing import Dict, Type


class Error(Exception):
    """Base class of tierkv's errors. ``code``: the status name; ``message``: why."""

    code = "Unknown"
    status = -1

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotFound(Error):
    """No such namespace, sequence, block, lease or daemon socket."""
    code, status = "NotFound", 1


class InvalidArgument(Error):
    """A bad argument: refused by this package, the library or the daemon."""
    code, status = "InvalidArgument", 2


class AlreadyExists(Error):
    """A namespace exists with another spec."""
    code, status = "AlreadyExists", 3


class ResourceExhausted(Error):
    """A tier, budget, ring or the channel count is full."""
    code, status = "ResourceExhausted", 4


class Busy(Error):
    """Try again: a pinned block (a lease holds it), a full ring, or no reply in time."""
    code, status = "Busy", 5


class IOError(Error):  # noqa: A001 - named after the status code; tierkv.IOError, not the builtin
    """An I/O error (the disk tier, or the daemon's socket). Not the builtin IOError."""
    code, status = "IOError", 6


class DeviceError(Error):
    """A CUDA error."""
    code, status = "DeviceError", 7


class Corruption(Error):
    """Bytes that fail their checksum, or a malformed reply or ring."""
    code, status = "Corruption", 8


class NotSupported(Error):
    """Not supported by this daemon (e.g. a GPU worker against a daemon without one)."""
    code, status = "NotSupported", 9


class PermissionDenied(Error):
    """Not in the namespace's ACL, or not an admin."""
    code, status = "PermissionDenied", 10


class Shutdown(Error):
    """The daemon is shutting down."""
    code, status = "Shutdown", 11


class Internal(Error):
    """A bug: please report it with the message."""
    code, status = "Internal", 12


class Unavailable(Error):
    """The daemon is gone: it exited or closed this connection. Pending and later calls
    of the client and its channels raise it at once; :meth:`Client.reconnect` dials again."""
    code, status = "Unavailable", 13


_BY_STATUS: Dict[int, Type[Error]] = {
    cls.status: cls
    for cls in (NotFound, InvalidArgument, AlreadyExists, ResourceExhausted, Busy, IOError, DeviceError,
                Corruption, NotSupported, PermissionDenied, Shutdown, Internal, Unavailable)
}


def from_status(status: int, message: str) -> Error:
    """The exception for a tierkv_status value; the ``"Code: "`` prefix of message is dropped."""
    cls = _BY_STATUS.get(status, Internal)
    prefix = cls.code + ": "
    if message.startswith(prefix):
        message = message[len(prefix):]
    if cls is Internal and status != Internal.status:
        message = f"status {status}: {message}"
    return cls(message)


def from_message(message: str) -> Error:
    """The exception for a library message "Code: text" (a call that returned NULL)."""
    for cls in _BY_STATUS.values():
        if message.startswith(cls.code + ": "):
            return cls(message[len(cls.code) + 2:])
    return Internal(message or "the call failed without a message")


assert IOError is not builtins.IOError
