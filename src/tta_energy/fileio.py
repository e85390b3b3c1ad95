"""Files that appear whole or not at all: each writer writes a hidden temporary file in the target's folder
and renames it onto the target (``os.replace``, atomic on POSIX). A crash or a kill mid-write leaves the
previous file (or none) and at most the temporary; an exception inside Python removes the temporary too."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tta_energy.errors import TtaError

#: where a user's runs go unless an output is named: outside data/, which holds the committed tables that
#: `make reproduce` reads, so that trying a command never changes the repository's figures (git-ignored)
DEFAULT_OUT_DIR = Path("runs")
#: where a quality sweep writes its WAVs by default (git-ignored), as ``<model>/<dataset>/<steps>/<file>``
DEFAULT_AUDIO_DIR = Path("outputs/audio")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; renamed onto ``path`` when the block ends cleanly."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def check_file_targets(paths: Iterable[Path], error: type[TtaError] = TtaError) -> None:
    """Each file a command is about to write is absent or a file: a folder standing at one would fail its
    write after the files before it were written."""
    for path in paths:
        if Path(path).is_dir():
            raise error(f"{path} is a folder, where a file is to be written: move it, or choose another "
                        "output folder")


def staging_folder(out: Path) -> Path:
    """A new hidden folder beside ``out`` to write a set of files into before moving them there, so that a
    failure leaves none of them; a place that cannot be written is refused in one line naming ``out``."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        why = _why_unwritable(exc, out.parent)
        raise TtaError(f"{out} cannot be written: {why}; choose a folder you can write to") from None


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def write_csv_atomic(path: str | Path, df: Any) -> None:
    """A pandas DataFrame as CSV, without its index."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def torch_save_atomic(obj: object, path: str | Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def writable_folder(folder: Path, what: str = "output folder") -> None:
    """Create ``folder`` if needed and prove it takes a file, before any work is done."""
    folder = folder_path(folder, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _make_a_file_in(folder)
    except OSError as exc:
        raise TtaError(f"{what} {folder} cannot be written: {_why_unwritable(exc, folder)}") from None


def _make_a_file_in(folder: Path) -> None:
    """Make a file in ``folder`` and remove it at once (OSError where none can be made): some file systems
    (/proc) refuse files that ``os.access`` allows."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".tta-energy-probe-"):
        pass


def _why_unwritable(exc: OSError, folder: Path) -> str:
    """The reason a file could not be made in the existing ``folder``, in words."""
    if isinstance(exc, FileNotFoundError) and folder.is_dir():  # /proc, say: a folder that takes no file
        return "its file system makes no new file there"
    return exc.strerror or type(exc).__name__


def folder_path(folder: Path, what: str = "output folder") -> Path:
    """``folder`` when it is a folder or could be made one (absent, under a folder); a file there, or above
    it, is refused with one line. Nothing is created: a refused command leaves no empty folder behind."""
    folder = Path(folder)
    for p in (folder, *folder.parents):
        if p.is_dir():
            return folder
        if p.exists():
            where = "is a file" if p == folder else f"lies under {p}, a file"
            raise TtaError(f"{what} {folder} {where}: a folder is expected")
    return folder


def output_folder_path(folder: Path, what: str = "output folder") -> Path:
    """:func:`folder_path` for a folder a command will write to: also refused, before any work, when the
    folder (or, absent, the nearest folder above it) is not writable by this user."""
    folder = folder_path(folder, what)
    existing = next(p for p in (folder, *folder.parents) if p.is_dir())
    where = "" if existing == folder else f" ({existing} is where it would be made)"
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TtaError(f"{what} {folder} cannot be written: permission denied{where}; choose a folder you "
                       "can write to")
    try:
        _make_a_file_in(existing)
    except OSError as exc:
        why = _why_unwritable(exc, existing)
        raise TtaError(f"{what} {folder} cannot be written: {why}{where}; choose a folder you can write "
                       "to") from None
    return folder


def own_output_folder(out: Path, option: str, command: str, ours: Callable[[Path], bool], mark: str) -> Path:
    """``out`` when ``command`` may write its set of files there: absent, empty, or written by it before
    (``ours(out)``: ``mark`` says how it tells), and writable; checked before any work. A folder of other
    files (a repository's root, say) is refused with one line."""
    out = output_folder_path(Path(out), option)
    if out.is_dir() and any(out.iterdir()) and not ours(out):
        raise TtaError(f"{option} {out}: holds files that {command} did not write ({mark}); choose an "
                       "empty or new folder")
    return out


def csv_name(path: Path, what: str = "output table", error: type[Exception] = TtaError) -> Path:
    """``path`` when its name ends in ``.csv``: every table this project writes is a CSV file, and a name
    without the suffix is more likely a mistaken argument than a wish for another format."""
    if Path(path).suffix != ".csv":
        raise error(f"{what} {path} must end in .csv")
    return Path(path)


def output_file_folder(path: Path) -> Path:
    """The folder of the output file ``path``, which must exist: a command creates the folders it is given
    (``--out-dir``, ``--audio-dir``), never the folder of a file it is given, where a mistyped path would
    otherwise become a new folder. Else :class:`TtaError` with one line (a file in the folder's place, or
    above it, is named as a file)."""
    folder = Path(path).parent
    if not folder.is_dir():
        folder_path(folder, "output folder")
        raise TtaError(f"output folder {folder} does not exist")
    return folder


def writable_file(path: Path, what: str = "output table") -> None:
    """The folder of ``path`` exists (:func:`output_file_folder`) and takes files, and ``path`` itself, when
    it exists, can be appended to."""
    path = Path(path)
    if path.is_dir():
        raise TtaError(f"{what} {path} is a folder: give a file name")
    writable_folder(output_file_folder(path), f"folder of the {what}")
    if path.exists():
        try:
            with open(path, "ab"):
                pass
        except OSError as exc:
            raise TtaError(f"{what} {path} cannot be written: {exc.strerror}") from None


def read_toml(path: str | Path, error: type[Exception], what: str) -> dict[str, Any]:
    """A TOML file as a dict; a missing, unreadable or invalid file (a folder, one that is not UTF-8 text)
    raises ``error`` with one line that names it as ``what`` (e.g. "campaign file") and says what is
    expected."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    expected = f"give a {what.removesuffix(' file')} TOML file"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a folder: {expected}") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{what} {path} is not a UTF-8 text file (byte {exc.start}, line {line}): "
                    f"{expected}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from None


def _pandas_rounds_floats_correctly() -> bool:
    """pandas 3.1 parses decimal text to the nearest float by default; 2.x and 3.0 need ``round_trip`` (their
    default parser can be one unit in the last place off: 12.050448754336685 read as ...683)."""
    import pandas as pd

    major, minor = (int(part) for part in pd.__version__.split(".")[:2])
    return (major, minor) >= (3, 1)


def read_csv_exact(source: Any, **kwargs: Any) -> Any:
    """``pandas.read_csv`` with every float correctly rounded, on any pandas this project supports."""
    import pandas as pd

    if not _pandas_rounds_floats_correctly():
        kwargs.setdefault("float_precision", "round_trip")
    return pd.read_csv(source, **kwargs)


def exact_numbers(text: Any) -> Any:
    """A Series of decimal strings as float64 (NaN where empty or not a number), correctly rounded:
    ``pandas.to_numeric`` is not before pandas 3.1, Python's ``float`` always is."""
    import pandas as pd

    numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    if not _pandas_rounds_floats_correctly():
        parsed = numbers.notna()
        numbers[parsed] = [float(v) for v in text[parsed]]
    return numbers


def path_beside(declaring_file: Path, value: str) -> Path:
    """A path that a TOML file names: a relative one is relative to the file's folder (as in pyproject.toml),
    so that the commands read and write the same place from any working directory."""
    named = Path(value)
    return named if named.is_absolute() else Path(os.path.normpath(declaring_file.parent / named))


def toml_value(table: dict, key: str, kind: type | tuple[type, ...], default: Any, where: str,
               error: type[Exception] = TtaError) -> Any:
    """``table[key]`` (``default`` when absent) checked to be of ``kind``; else ``error`` with one line naming
    ``where`` (the file and table) and the key. A TOML boolean is not a number here, and a blank string is no
    value (leaving the key out is how a file asks for the default: an empty ``gpu`` or ``out_dir`` would
    otherwise read as "any card" or the file's own folder)."""
    value = table.get(key, default)
    if value is default:
        return value
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise error(f"{where}: {key} must be {toml_kind_name(kind)}, got {value!r}")
    if isinstance(value, str) and not value.strip():
        raise error(f"{where}: {key} is empty: give a value, or leave {key} out for its default")
    return value


def toml_kind_name(kind: type | tuple[type, ...]) -> str:
    """What a TOML value of ``kind`` is called in an error ("an integer", "a number or a string")."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number", "list": "a list",
                        "dict": "a table", "bool": "true or false"}[k.__name__] for k in kinds)


#: what is said of a table whose last line a killed writer cut: ``summary`` reports it as a problem, the
#: commands that read such a table warn and go on without that line
CUT_LAST_LINE = "its last line is cut (a writer was killed mid-line)"


def last_line_cut(path: str | Path) -> bool:
    """Whether the file ``path`` ends inside a line (no newline after its last byte): the row a killed writer
    was appending. Readers leave that line out (:func:`csv_text`) and the next append removes it."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return ends_inside_line(fh.read(1))
    except OSError:
        return False  # a file that cannot be read is named by whoever reads it


def ends_inside_line(raw: bytes) -> bool:
    """Whether the bytes ``raw`` (a whole file, or its last byte) end inside a line: :func:`last_line_cut`
    for text already read."""
    return bool(raw) and not raw.endswith(b"\n")


def _is_utf8(path: str | Path) -> bool:
    try:
        Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return True


def warn_if_cut(path: str | Path) -> bool:
    """One ``warning:`` line on stderr when ``path``'s last line is cut (:func:`last_line_cut`), for a command
    that reads the table and goes on without that row: the loss is said, not passed over. Whether it was."""
    cut = last_line_cut(path) and _is_utf8(path)  # a file that is no text is named by whoever reads it
    if cut:
        print(f"warning: {path}: {CUT_LAST_LINE}: the row in flight is lost, the rows before it are read",
              file=sys.stderr)
    return cut


def csv_text(path: str | Path, what: str, error: type[TtaError] = TtaError) -> str:
    """The text of a table that rows are appended to: UTF-8, its complete lines only (a last line cut by a
    killed writer is not a row; the next append removes it), and at least a header; else ``error`` with one
    line naming ``path`` and what is wrong."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}: not UTF-8 text (byte {exc.start}, line {line}); a {what} is a CSV "
                    "file") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        raise error(f"{path}: empty {what}, not even a header line")
    return text
