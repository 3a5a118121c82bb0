"""The exception types that end a command with one line instead of a traceback, one exit code each."""


class UserError(Exception):
    """A problem caused by the user's input (config, data, prompt, checkpoint).

    The CLI prints it as a single line and exits with status 2, so the message must name both the
    problem and the fix.
    """


class UnknownCharacters(UserError):
    """Text with characters outside a model's vocabulary; `missing` lists them, so a caller that knows where the
    text came from can say so."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


class NumericalError(Exception):
    """Training produced a non-finite loss or gradient; the CLI exits with status 3."""


class MachineError(Exception):
    """The machine refused a write: disk full, quota exceeded, a read-only or deleted folder.

    The CLI prints it as a single line and exits with status 4. It reads "`problem`; `fix`"; a caller that
    knows more (the trainer: the last good checkpoint and the resume command) words its own line from the two.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}; {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix
