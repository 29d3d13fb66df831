"""Exceptions that carry their exit code and a hint, and the exit-status map.

Expected errors are printed as one line plus a hint (pip's DiagnosticPipError style);
only ``-v`` shows a traceback.
"""

from __future__ import annotations

# Exit codes (DESIGN.md): the single source of truth for every command.
EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_FAILED = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4
EXIT_INTERRUPTED = 130
# Cancelled at the confirmation prompt (or refused for want of --yes without a TTY): nothing
# was changed, as with bad input -- the same code in every command and front end.
EXIT_CANCELLED = EXIT_BAD_INPUT


class OpskitError(Exception):
    """An expected error: one line of what is wrong, one line of what to do."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(OpskitError):
    """Bad option or argument."""


class Cancelled(OpskitError):
    """The operator answered no at the confirmation prompt; nothing was changed."""

    exit_code = EXIT_CANCELLED


class InventoryError(OpskitError):
    """Malformed, missing or inconsistent inventory."""


class PatternError(InventoryError):
    """A --limit pattern that is invalid or matches nothing."""


class ConfigError(OpskitError):
    """Bad configuration outside the inventory (environment, files)."""


class LabError(OpskitError):
    """The local lab could not be brought up, inspected or torn down."""


class SafetyError(OpskitError):
    """A preflight safety check refused the operation; nothing was changed."""

    exit_code = EXIT_REFUSED


class StepError(OpskitError):
    """A remote step of a runbook failed (what was done before it is reported)."""

    exit_code = EXIT_FAILED


class HostUnreachable(OpskitError):
    """A host the operation needs cannot be reached."""

    exit_code = EXIT_UNREACHABLE
