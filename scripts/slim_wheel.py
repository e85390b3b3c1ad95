"""Rewrite a wheel without the folders a device call does not need, so that the wheels and the tracked files
fit the 64 MiB a device call carries.

    python scripts/slim_wheel.py WHEEL FOLDER_IN_WHEEL ...   # e.g. .whl/pycountry-*.whl pycountry/locales

pycountry's translations (``pycountry/locales``, about 7.7 of its 8 MB) are the example: CodeCarbon imports
pycountry only to look countries up by code, which reads ``pycountry/databases``. The members under each
folder are dropped and so are their lines in the wheel's ``RECORD``; the rest is copied byte for byte, and the
wheel is replaced atomically. A wheel without those folders is left as it is.
"""

from __future__ import annotations

import os
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path


def slim_wheel(wheel: Path, folders: list[str]) -> int:
    """Drop every member of ``wheel`` under one of ``folders`` (paths inside the wheel) and its ``RECORD``
    line; returns the bytes saved (0 when nothing matched)."""
    prefixes = tuple(folder.rstrip("/") + "/" for folder in folders)
    with zipfile.ZipFile(wheel) as source:
        members = source.infolist()
        dropped = {m.filename for m in members if m.filename.startswith(prefixes)}
        if not dropped:
            return 0
        fd, tmp = tempfile.mkstemp(dir=wheel.parent, prefix=f".{wheel.name}.", suffix=".tmp")
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w") as target:
                for member in members:
                    if member.filename in dropped:
                        continue
                    data = source.read(member)
                    if member.filename.endswith(".dist-info/RECORD"):
                        lines = data.decode("utf-8").splitlines(keepends=True)
                        data = "".join(line for line in lines
                                       if line.split(",", 1)[0] not in dropped).encode("utf-8")
                    target.writestr(member, data, compress_type=member.compress_type)
            before = wheel.stat().st_size
            os.chmod(tmp, wheel.stat().st_mode & 0o777)  # mkstemp makes it 0600
            os.replace(tmp, wheel)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return before - wheel.stat().st_size


def main(argv: list[str]) -> int:
    usage = "usage: python scripts/slim_wheel.py WHEEL FOLDER_IN_WHEEL ..."
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print(usage, file=sys.stderr)
        return 2
    wheel = Path(argv[0])
    problem = ("is a folder" if wheel.is_dir() else "does not exist" if not wheel.exists()
               else "is not a .whl file" if wheel.suffix != ".whl" else None)
    if problem:
        print(f"error: {wheel} {problem}: give a wheel ({usage.removeprefix('usage: ')})", file=sys.stderr)
        return 2
    blank = [folder for folder in argv[1:] if not folder.strip("/ ") or folder.startswith("-")]
    if blank:
        print(f"error: {blank[0]!r} is no folder in a wheel: name folders such as pycountry/locales",
              file=sys.stderr)
        return 2
    try:
        saved = slim_wheel(Path(argv[0]), argv[1:])
    except zipfile.BadZipFile:
        print(f"error: {argv[0]} is not a wheel (not a zip archive)", file=sys.stderr)
        return 2
    except (OSError, zlib.error, UnicodeDecodeError) as exc:
        print(f"error: {argv[0]} could not be rewritten ({type(exc).__name__}: {exc}); it is left as it was",
              file=sys.stderr)
        return 2
    print(f"{Path(argv[0]).name}: {saved / 1e6:.1f} MB saved ({', '.join(argv[1:])} left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
