"""The base of errors that mean "the user's input or set-up is wrong", not a bug.

Each such error names the file, field, model, URL or setting at fault in its message; commands
report it as one line and exit status 2, never as a traceback (``cli_options.user_errors``). Upper
layers subclass it for their own errors, so the CLI plumbing down here need not know them.
"""

from __future__ import annotations


class UserError(Exception):
    """Wrong input or set-up, explained in the message; never a bug."""


class PartialFailure(Exception):
    """A job ran to its end but could not do all of it (documents that failed to load, by id).

    Commands report it as one line and exit status 1: the input was fine, some of the work was not
    done, and rerunning the same command does the rest.
    """
