"""The one exception family the command line turns into a one-line error and a non-zero exit."""


class TtaError(ValueError):
    """A user-facing error: bad input, missing file, wrong layout. The message is one line."""


class ModelError(TtaError):
    """Bad model input (unknown name, bad parameter, bad weights); the message is one line for the user."""


def positive_number(value: float, what: str, *, allow_zero: bool = False, unit: str = "",
                    error: type[TtaError] = TtaError) -> float:
    """``value`` as a float when it is a finite number > 0 (>= 0 with ``allow_zero``), else ``error`` with
    one line: ``WHAT must be a finite number [of UNIT], got V`` or ``WHAT must be > 0 [UNIT], got V``. The one
    rule every option, plan field and model parameter of this kind is checked by."""
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise error(f"{what} must be a finite number{f' of {unit}' if unit else ''}, got {value!r}")
    if not (number >= 0 if allow_zero else number > 0):
        raise error(f"{what} must be {'>= 0' if allow_zero else '> 0'}{f' {unit}' if unit else ''}, "
                    f"got {value!r}")
    return number


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of ``str(exc)`` (surrounding whitespace stripped); when that is empty, ``default``,
    or the exception's class name when ``default`` is None."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if default is None else default
