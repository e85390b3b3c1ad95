"""The one exception family the command line turns into a one-line error and a non-zero exit."""


class TtaError(ValueError):
    """A user-facing error: bad input, missing file, wrong layout. The message is one line."""


class ModelError(TtaError):
    """Bad model input (unknown name, bad parameter, bad weights); the message is one line for the user."""


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of ``str(exc)`` (surrounding whitespace stripped); when that is empty, ``default``,
    or the exception's class name when ``default`` is None."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if default is None else default
