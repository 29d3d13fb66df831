"""A secret read from a file on the operator's machine (a sudo password, a Redis password):
the file must be nobody else's to read (ssh's rule for private keys), and no message ever
quotes what it holds."""

from __future__ import annotations

import os
import stat

from opskit.errors import UsageError

MAX_BYTES = 4096  # a password file, not a file that happens to be there


class Secret:
    """One line of secret text: shown nowhere (its repr and str name only where it came
    from), never joined into a command line; programs get it on stdin."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        if not value or any(c in value for c in "\n\r\0"):
            raise ValueError("a secret is one non-empty line")
        self._value = value
        self.source = source  # "the prompt", "file /path": for messages

    def line(self) -> bytes:
        """The secret and one newline: what a program reading one line from stdin takes (the
        rest of stdin is left to it)."""
        return (self._value + "\n").encode()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from {self.source})"

    __str__ = __repr__


def read(path: str, what: str, *, how: str) -> Secret:
    """The one line in ``path`` (one trailing newline is not part of it). ``what`` names the
    file in messages ("the sudo password file"), ``how`` says how it is given (for hints).
    Refused: a file others may read or write, or of another user than you or root; not one
    line of UTF-8 text."""
    where = os.path.expanduser(path)
    text = "give a file that holds the password alone, on one line"
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}",
                         hint=f"{text} ({how})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"{what} {path} is not a regular file", hint=text)
        if st.st_mode & 0o077:
            raise UsageError(f"{what} {path} is open to others (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}): refusing to use it",
                             hint=f"chmod 600 {path} (only its owner may read it, as ssh "
                             "wants of a private key)")
        if st.st_uid not in (os.geteuid(), 0):
            raise UsageError(f"{what} {path} belongs to uid {st.st_uid}, not to you or root: "
                             "refusing to use it",
                             hint=f"use a file of your own (chown, then chmod 600 {path})")
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise UsageError(f"{what} {path} is larger than {MAX_BYTES} bytes",
                         hint="the file holds the password alone, on one line")
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        value = data.decode()
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path} is not UTF-8 text",
                         hint="the file holds the password alone, on one line") from None
    if not value:
        raise UsageError(f"{what} {path} is empty",
                         hint="write the password into it: printf '%s\\n' PASSWORD > FILE "
                         "in a shell without history, or an editor")
    if any(c in value for c in "\n\r\0"):
        raise UsageError(f"{what} {path} holds more than one line (or a CR or NUL): it is "
                         "read as one line", hint="the file holds the password alone, on "
                         "one line (one trailing newline is fine)")
    return Secret(value, f"file {path}")
