"""The exceptions the command line turns into one error line and a non-zero exit: the user-facing family
(:class:`TtaError`, exit 2) and a lost CUDA context (:class:`CudaContextLost`, exit 5), with the rules that
name them."""

import re


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


#: the largest seed: a seed is an integer 0..2**32-1, the range of the narrowest seeded generator here
#: (numpy's legacy ``RandomState``, which FAD-inf's fadtk procedure uses); torch's ``manual_seed``, numpy's
#: ``default_rng`` and ``random.Random`` take it too
MAX_SEED = 2**32 - 1


def seed_number(value: int, what: str = "--seed", *, error: type[TtaError] = TtaError) -> int:
    """``value`` when it is an integer from 0 to :data:`MAX_SEED`, else ``error`` with one line naming
    ``what`` and the range: the one rule every command's ``--seed`` and every file's seed is checked by."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise error(f"{what} must be an integer from 0 to 2**32-1 ({MAX_SEED}), got {value!r}")
    return value


def listed_once(raw: list[str], what: str, items_are: str, *, error: type[TtaError] = TtaError,
                otherwise: str = "") -> tuple[str, ...]:
    """The items of a list the user wrote (``raw``: its comma-separated items, stripped, empty ones kept) when
    it names something, has no empty item and names nothing twice; else ``error`` with one line that names
    ``what`` (the option or spec, as written) and says what to write (``otherwise``: what leaving it out
    means). The one rule every comma list is checked by, options and lever specs alike."""
    items = tuple(t for t in raw if t)
    if not items:
        raise error(f"{what} names nothing: give one or more {items_are}{otherwise}")
    no_empty_item(raw, what, items_are, error=error)
    twice = [t for i, t in enumerate(items) if t in items[:i]]
    if twice:
        raise error(f"{what} names {twice[0]} twice: name each once")
    return items


def no_empty_item(raw: list[str], what: str, items_are: str, *, error: type[TtaError] = TtaError,
                  fix: str = "") -> None:
    """Refuse a list the user wrote (``raw``: its items, stripped) that has an empty item, with one line that
    names ``what`` (the list as written) and says what to write (``fix``; by default, the items between
    commas): :func:`listed_once`'s rule for empty items, also for lists whose items are told apart by their
    meaning rather than their text (a sweep's grid)."""
    if not all(raw):
        raise error(f"{what} has an empty item: {fix or f'write the {items_are} between commas'}")


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of ``str(exc)`` (surrounding whitespace stripped); when that is empty, ``default``,
    or the exception's class name when ``default`` is None."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if default is None else default


#: how the CUDA runtime words the errors that leave a process's CUDA context unusable (every later CUDA call
#: fails with the same error until the process exits; CUDA Runtime API, ``cudaError``: "the process must be
#: terminated and relaunched"), lower case
CONTEXT_LOST_ERRORS = (
    "unspecified launch failure",  # cudaErrorLaunchFailure
    "an illegal memory access was encountered",  # cudaErrorIllegalAddress
    "device-side assert triggered",  # cudaErrorAssert
    "an illegal instruction was encountered",  # cudaErrorIllegalInstruction
    "misaligned address",  # cudaErrorMisalignedAddress
    "invalid program counter",  # cudaErrorInvalidPc
    "hardware stack error",  # cudaErrorHardwareStackError
    "the launch timed out and was terminated",  # cudaErrorLaunchTimeout
    "uncorrectable ecc error encountered",  # cudaErrorECCUncorrectable
)


#: how the error says it is CUDA's: torch's ``CUDA error: ...``, the driver API's ``CUDA driver error: ...``,
#: Triton's launcher (compiled kernels) ``Triton Error [CUDA]: ...``
_CUDA_ERROR = re.compile(r"cuda(?: driver)? error|error \[cuda\]")


def lost_cuda_context(error: object) -> bool:
    """Whether ``error`` (an exception or a row's error text) is a CUDA error after which nothing more can run
    in the process: the one rule the sweeps, the campaign and the levers harness stop by."""
    if isinstance(error, CudaContextLost):
        return True
    text = str(error).lower()
    return bool(_CUDA_ERROR.search(text)) and any(words in text for words in CONTEXT_LOST_ERRORS)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a device script's hard limit, a scheduler), stopping a command as SIGINT does; the signal's
    name is kept so that what records the stop (a campaign's runs log) names the right one."""

    signal_name = "SIGTERM"


def stop_signal_name(interrupt: KeyboardInterrupt) -> str:
    """The signal that raised ``interrupt``: SIGTERM for :class:`Terminated`, else SIGINT (Ctrl-C)."""
    return getattr(interrupt, "signal_name", "SIGINT")


class CudaContextLost(RuntimeError):
    """A generation, or applying a configuration, lost the process's CUDA context (``error``, in ``where``):
    the rows before it are kept, nothing more can be measured in this process, and a fresh one can go on (the
    command line exits with its own status)."""

    def __init__(self, where: str, error: str) -> None:
        super().__init__(f"the CUDA context was lost in {where}: {error}; the rows before it are kept: run "
                         "the command again (a fresh process) to measure the rest")
        self.where = where
        self.error = error


def reraise_if_context_lost(exc: BaseException, where: str) -> None:
    """Raise :class:`CudaContextLost` naming ``where`` when ``exc`` lost the CUDA context (one already raised
    deeper goes on as it is): for the handlers that leave a failing option out and go on, which must not go
    on in a dead context."""
    if isinstance(exc, CudaContextLost):
        raise exc
    if lost_cuda_context(exc):
        raise CudaContextLost(where, f"{type(exc).__name__}: {first_line(exc)}") from exc
