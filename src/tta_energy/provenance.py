"""Who measured a row, where and with what: the run record's provenance columns that are not about the GPU."""

from __future__ import annotations

import datetime as dt
import functools
import os
import secrets
import socket
import subprocess
from importlib import metadata
from pathlib import Path

#: the UTC time a ``run_id`` starts with
RUN_ID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"


def new_run_id() -> str:
    """A new ``run_id``: the UTC time and 6 random hex digits (one per command that writes rows)."""
    return dt.datetime.now(dt.timezone.utc).strftime(RUN_ID_TIME_FORMAT) + "-" + secrets.token_hex(3)


def run_id_start(run_id: str) -> float:
    """The POSIX time a ``run_id`` of :func:`new_run_id` was made at (NaN when it holds none)."""
    try:
        stamp = dt.datetime.strptime(run_id.split("-")[0], RUN_ID_TIME_FORMAT)
    except ValueError:
        return float("nan")
    return stamp.replace(tzinfo=dt.timezone.utc).timestamp()


#: distribution name -> run-record column
LIBRARIES: dict[str, str] = {"torch": "torch_version", "diffusers": "diffusers_version",
                             "transformers": "transformers_version", "codecarbon": "codecarbon_version",
                             "tta-energy": "tta_energy_version"}


def package_version(name: str) -> str:
    """Installed version of a distribution, '' if it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        if name == "tta-energy":  # running from a source tree (PYTHONPATH=src) without installing
            from tta_energy import __version__

            return __version__
        return ""


def library_versions() -> dict[str, str]:
    return {column: package_version(name) for name, column in LIBRARIES.items()}


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """Commit of the measuring code: $TTA_ENERGY_GIT_COMMIT if set, else ``git rev-parse HEAD`` of the
    source tree (with ``+dirty`` when it has uncommitted changes), else ''."""
    forced = os.environ.get("TTA_ENERGY_GIT_COMMIT", "").strip()
    if forced:
        return forced
    root = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}+dirty" if dirty else sha


def hostname() -> str:
    return socket.gethostname()


def distributed_rank() -> int:
    """torch.distributed rank when a process group is up, else $RANK (torchrun), else 0."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
    except ImportError:
        pass
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


@functools.lru_cache(maxsize=1)
def host_cpu_model() -> str:
    """The CPU's model name (``model name`` of /proc/cpuinfo on Linux, else the platform's), '' if unknown.

    A launch-bound generation's time depends on the host CPU, so rows say which one ran it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def host_provenance() -> dict[str, object]:
    """hostname, CPU model and count, rank, library versions and git commit (the GPU columns come from the
    meter)."""
    return {"hostname": hostname(), "host_cpu_model": host_cpu_model(), "host_cpu_count": os.cpu_count() or 0,
            "rank": distributed_rank(), **library_versions(), "git_commit": git_commit()}
