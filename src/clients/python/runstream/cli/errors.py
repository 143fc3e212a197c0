"""The CLI's own error: a problem worth one line on stderr, not a traceback."""

from __future__ import annotations


class CliError(Exception):
    """A failure the user can act on, such as an address already in use."""


class UsageError(CliError):
    """A command line that cannot work as given: exit status 2, as argparse's own errors."""
