"""User-facing errors.

Every error a user can cause with a flag, a file or a config value is raised as a
`UserError` with one actionable sentence (which flag or file, what was expected).
The command-line scripts catch `UserError`, print its message and exit with status 1
instead of showing a TensorFlow stack trace.
"""


class UserError(Exception):
    """An error caused by user input; its message says what to change."""


class DataError(UserError):
    """Missing, malformed or mismatched input data."""


class ConfigError(UserError):
    """An unknown or inconsistent configuration value."""


class CheckpointError(UserError):
    """A corrupt checkpoint, or one written by a different configuration."""


class ExportError(UserError):
    """An export target that exists or a model that cannot be exported."""


class DiskFullError(UserError):
    """No space left on the device an output is written to (`fileio.disk_full_error`)."""


class TrainingDivergedError(UserError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a cluster scheduler sends), raised in the main thread by the handler
    `cli.run_main` installs; a KeyboardInterrupt, so the code that handles Ctrl-C handles it."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during work that saved something; the message says what, for the
    one line the scripts print (`cli.run_main`). `terminated`: it was SIGTERM."""

    def __init__(self, message: str, terminated: bool = False):
        super().__init__(message)
        self.terminated = terminated


def first_line(err: BaseException, limit: int = 240) -> str:
    """The first line of an exception's message (its type name when empty), at most `limit`
    characters: what an `error:` line quotes of a library's multi-line error."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:limit]
