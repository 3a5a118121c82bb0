"""The one exception type for problems a user can fix."""


class UserError(Exception):
    """A problem caused by the user's input (config, data, prompt, checkpoint).

    The CLI prints it as a single line and exits with status 2, so the message must name both the
    problem and the fix.
    """


class NumericalError(Exception):
    """Training produced a non-finite loss or gradient; the CLI exits with status 3."""
