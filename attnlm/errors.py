"""The one exception type for problems a user can fix."""


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
