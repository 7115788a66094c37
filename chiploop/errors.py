"""Exception hierarchy: every user-facing error derives from ChiploopError.

The CLI turns a ChiploopError into one line on stderr and exit code 2.
"""


class ChiploopError(Exception):
    """Base of every error chiploop raises for a user's mistake or a device fault."""

    exit_code = 2


class ProfileError(ChiploopError):
    """A chip profile is malformed: names the file, the field path and what is allowed."""


class DesignRuleError(ChiploopError):
    """A network breaks a chip limit: names the rule, the limit and the offending value."""

    def __init__(self, rule: str, limit: object, value: object, detail: str = "") -> None:
        self.rule, self.limit, self.value = rule, limit, value
        msg = f"design rule '{rule}' violated: limit {limit}, got {value}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


class ChipError(ChiploopError):
    """A chip was asked for something it cannot do (bad shape, dtype, NaN weights...)."""


class LinkError(ChiploopError):
    """The serial link to a board failed: names the port and the reason."""


class TrainingError(ChiploopError):
    """A training run cannot go on (diverged loss, corrupt checkpoint, bad configuration)."""


class Interrupted(ChiploopError):
    """The user interrupted a command (Ctrl-C); the message says what was saved. Exit code 130."""

    exit_code = 130
