"""Exit codes every subcommand shares, and the one exception that carries them to `cli.main`."""

from __future__ import annotations

OK = 0
FAILED_INPUT = 1  # the input was read but is unusable (bad audio, torn checkpoint, no tracks left)
USAGE = 2  # wrong arguments (argparse uses 2 as well)
ENVIRONMENT = 3  # the machine lacks something: a base model, ffmpeg, a package of the `train` extra


class LoraError(Exception):
    """A failure the user can act on: `message` says what and what to do, `code` is the exit code."""

    def __init__(self, message: str, code: int = FAILED_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
