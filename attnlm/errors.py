"""The exception types that end a command with one line instead of a traceback, one exit code each."""


class UserError(Exception):
    """A problem caused by the user's input (config, data, prompt, checkpoint).

    The CLI prints it as a single line and exits with status 2, so the message must name both the
    problem and the fix.
    """


class ArgumentTypeError(UserError, TypeError):
    """An argument of the wrong type (a string where a count belongs, one string where a list of overrides
    belongs). A TypeError too, so Python code that catches the built-in kind catches it; the message names the
    argument as the caller wrote it (`max_new_tokens` in Python, `--max-new-tokens` at the CLI)."""


class ArgumentValueError(UserError, ValueError):
    """An argument of the right type outside its range (a negative count, a layer the model lacks, a seed torch
    cannot take). A ValueError too; named like ArgumentTypeError."""


def clipped(value: object, limit: int = 60) -> str:
    """A value as Python writes it, cut short, so an argument error stays one readable line."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def got(value: object) -> str:
    """`'5' (str)`: the value and its type, which is what a wrong type needs to be seen."""
    return f"{clipped(value)} ({type(value).__name__})"


class UnknownCharacters(UserError, ValueError):
    """Text with characters outside a model's vocabulary; `missing` lists them, so a caller that knows where the
    text came from can say so. A ValueError too: the text is a value the model cannot read."""

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
