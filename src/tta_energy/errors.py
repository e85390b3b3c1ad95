"""The one exception family the command line turns into a one-line error and a non-zero exit."""


class TtaError(ValueError):
    """A user-facing error: bad input, missing file, wrong layout. The message is one line."""
