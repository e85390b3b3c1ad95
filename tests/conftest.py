"""Fixtures shared by several test modules."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

#: the repository's root: the tests run from it, as the command line's defaults (``campaigns/h200.toml``,
#: ``data/``) and the Makefile do, wherever pytest was started
ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    os.chdir(ROOT)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin contention.

    A module that builds tiny models uses it for all its tests:
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hf_offline(one_thread):
    """No hub calls for a whole module (``HF_HUB_OFFLINE=1``, restored after), on one thread."""
    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    if old_env is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = old_env


def tiny_levers_options(tmp_path: Path, name: str, **changes: Any) -> Any:
    """Options of a small levers run on the CPU: tiny AudioLDM, ``none`` at 2 steps, batch 1, one repeat, no
    idle baseline or profiles, a short ceiling loop; results in ``tmp_path / name``, fp32 references in
    ``tmp_path / "refs"``; ``changes`` override any field."""
    from tta_energy.levers.experiment import LeversOptions

    values = dict(models=("audioldm",), out_dir=tmp_path / name, full_specs=("none",), batch1_specs=(),
                  single_specs=(), steps=(2,), batches=(1,), repeats=1, duration_s=1.0, size="tiny",
                  device="cpu", ceiling_s=0.02, ceiling_n=32, idle_s=0, min_window_s=0, profile=False,
                  references_dir=tmp_path / "refs", progress=lambda _msg: None)
    values.update(changes)
    return LeversOptions(**values)


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str,
            absent: tuple[Path, ...] = (), warnings_allowed: bool = False) -> str:
    """Run ``tta-energy ARGV`` as a user would: it must exit 2 with one ``error:`` line (besides
    ``warning:`` lines where allowed) holding every fragment, no traceback, and none of ``absent`` written;
    returns the error line."""
    from tta_energy.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines()
             if not (warnings_allowed and line.startswith("warning: "))]
    assert exc.value.code == 2, (argv, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    for path in absent:
        assert not path.exists(), path
    return lines[0]


#: the settings of a tiny campaign (``{out}``: its tables' folder, ``{weights}``: random or a path); the
#: experiment tables follow
TINY_CAMPAIGN_SETTINGS = """
name = "tiny"
out_dir = "{out}"
size = "tiny"
dtype = "float32"
weights = "{weights}"
idle_s = 0
min_window_s = 0
[repeats]
min = 2
max = 2
"""

TINY_CAMPAIGN = TINY_CAMPAIGN_SETTINGS.replace("{weights}", "random") + """
[[experiment]]
name = "steps"
models = ["audioldm", "tango"]
grid = ["1"]

[[experiment]]
name = "quality"
models = ["audioldm"]
grid = ["1"]
captions = ["audiocaps"]
caption_limit = 2
"""


@pytest.fixture
def tiny_campaign(tmp_path: Path) -> Path:
    """A campaign file of tiny models (steps: two models, two repeats; quality: two captions) that writes its
    tables into ``tmp_path / "tables"``."""
    path = tmp_path / "c.toml"
    path.write_text(TINY_CAMPAIGN.format(out=tmp_path / "tables"), encoding="utf-8")
    return path


@pytest.fixture
def proc_looks_writable(monkeypatch: pytest.MonkeyPatch) -> Path:
    """``/proc`` as root sees it: ``os.access`` allows writing there, yet no file can be made (its file
    system refuses); for any user, so that the test reaches the refusal of the write itself."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, where no file can be made")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *args, **kwargs: Path(path) == Path("/proc")
                        or real_access(path, mode, *args, **kwargs))
    return Path("/proc")


#: what ``install_distribution`` installs: (distribution name, {entry point: "module:ROW"}, {path: text})
Installer = Callable[..., Path]


@pytest.fixture
def install_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installer]:
    """Install distributions as pip leaves them (a ``NAME-VERSION.dist-info`` folder with ``METADATA`` and
    ``entry_points.txt``, and their module files) into a folder put first on ``sys.path``, without pip.

    ``install(name, entry_points={"model-name": "module:ROW"}, files={"pkg/row.py": "..."})`` declares
    the entry points in the group ``tta_energy.models``. The catalogue reads its plugins again before and
    after the test; the modules imported from that folder are forgotten afterwards.
    """
    from tta_energy.models import catalogue

    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    catalogue.plugin_entries.cache_clear()

    def install(name: str, *, entry_points: dict[str, str], files: dict[str, str] | None = None,
                version: str = "0.1") -> Path:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                                       encoding="utf-8")
        declared = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[{catalogue.ENTRY_POINT_GROUP}]\n{declared}",
                                               encoding="utf-8")
        for relative, text in (files or {}).items():
            path = site / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        importlib.invalidate_caches()
        return site

    yield install
    catalogue.plugin_entries.cache_clear()
    installed = [n for n, m in sys.modules.items() if str(getattr(m, "__file__", "")).startswith(str(site))]
    for module in installed:
        del sys.modules[module]


#: what scripts/gpu_campaign.sh sources to run a campaign (collect needs only the first two)
CAMPAIGN_SCRIPTS = ("gpu_campaign.sh", "device_exits.sh", "device_env.sh", "gpu_preflight.py")


def campaign_checkout(tmp_path: Path, scripts: tuple[str, ...] = CAMPAIGN_SCRIPTS,
                      out: str = "../tables") -> tuple[Path, dict[str, str]]:
    """A checkout holding copies of ``scripts`` (from scripts/) and the tiny campaign (campaigns/c.toml, its
    tables at ``out`` relative to that folder), and the environment that runs gpu_campaign.sh there with this
    checkout's package (OUT: tmp_path/out)."""
    import shutil

    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for script in scripts:
        shutil.copy(ROOT / "scripts" / script, repo / "scripts")
    (repo / "campaigns").mkdir()
    (repo / "campaigns" / "c.toml").write_text(TINY_CAMPAIGN.format(out=out), encoding="utf-8")
    return repo, {**os.environ, "PYTHON": sys.executable, "CAMPAIGN": "campaigns/c.toml",
                  "PYTHONPATH": str(ROOT / "src"), "OUT": str(tmp_path / "out")}
