"""scripts/slim_wheel.py: a wheel without the folders a device call does not need installs and imports."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("slim_wheel", ROOT / "scripts" / "slim_wheel.py")
slim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(slim)


def _wheel(folder: Path) -> Path:
    wheel = folder / "toypkg-1.0-py3-none-any.whl"
    files = {
        "toypkg/__init__.py": "from toypkg.db import lookup\n",
        "toypkg/db.py": "def lookup(code):\n    return {'IT': 'Italy'}[code]\n",
        "toypkg/locales/it/LC_MESSAGES/toypkg.mo": "x" * 5000,
        "toypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: toypkg\nVersion: 1.0\n",
        "toypkg-1.0.dist-info/WHEEL": ("Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                       "Tag: py3-none-any\n"),
    }
    record = "".join(f"{name},,\n" for name in files) + "toypkg-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("toypkg-1.0.dist-info/RECORD", record)
    return wheel


def test_a_slimmed_wheel_keeps_the_rest_byte_for_byte_and_pip_installs_it(tmp_path):
    wheel = _wheel(tmp_path)
    wheel.chmod(0o644)
    with zipfile.ZipFile(wheel) as z:
        before = {n: z.read(n) for n in z.namelist()}
    assert slim.slim_wheel(wheel, ["toypkg/locales"]) > 0
    with zipfile.ZipFile(wheel) as z:
        after = {n: z.read(n) for n in z.namelist()}
    assert not [n for n in after if n.startswith("toypkg/locales/")]
    assert all(after[n] == before[n] for n in after if not n.endswith("RECORD"))
    assert "locales" not in after["toypkg-1.0.dist-info/RECORD"].decode()
    assert after["toypkg-1.0.dist-info/RECORD"].decode().count("\n") == len(after)
    assert slim.slim_wheel(wheel, ["toypkg/locales"]) == 0  # nothing left to drop: the wheel stays as it is
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    assert wheel.stat().st_mode & 0o777 == 0o644  # the wheel keeps its mode

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    looked_up = subprocess.run([sys.executable, "-c", "import toypkg; print(toypkg.lookup('IT'))"],
                               cwd=site, capture_output=True, text=True, check=True)
    assert looked_up.stdout.strip() == "Italy"


def test_a_missing_wheel_is_named_and_a_file_that_is_no_wheel_one_error_line(tmp_path, capsys):
    assert slim.main([]) == 2
    assert capsys.readouterr().err == "usage: python scripts/slim_wheel.py WHEEL FOLDER_IN_WHEEL ...\n"
    for wheel, problem in ((tmp_path / "nope.whl", "does not exist"), (tmp_path, "is a folder")):
        assert slim.main([str(wheel), "x"]) == 2
        assert capsys.readouterr().err == (f"error: {wheel} {problem}: give a wheel (python "
                                           "scripts/slim_wheel.py WHEEL FOLDER_IN_WHEEL ...)\n")
    (tmp_path / "toy").mkdir()
    wheel = _wheel(tmp_path / "toy")
    before = wheel.read_bytes()
    for folder in ("", "/", "--help"):  # no folder to drop: nothing is rewritten
        assert slim.main([str(wheel), folder]) == 2
        assert capsys.readouterr().err == (f"error: {folder!r} is no folder in a wheel: name folders such as "
                                           "pycountry/locales\n")
    assert wheel.read_bytes() == before
    text = tmp_path / "text.whl"
    text.write_text("not a zip", encoding="utf-8")
    assert slim.main([str(text), "x"]) == 2
    assert capsys.readouterr().err == f"error: {text} is not a wheel (not a zip archive)\n"
    assert text.read_text(encoding="utf-8") == "not a zip" and len(list(tmp_path.iterdir())) == 2  # + toy/
