"""The fp32 reference outputs, computed once and reused: one small ``.npz`` per key.

A key is everything the reference's output depends on: model, size, weights, step count, batch, duration,
seed, prompt, and the code that computes it (:func:`code_version`), plus the torch version and the device it
ran on. A later call with the same key loads the latents and waveforms instead of spending a strict-fp32
generation on them; any change of the key computes a new one. The GPU script keeps them in
``data/h200/levers/references``, which travels with the repository, so a second device call reuses the first
call's references.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tta_energy.devices import is_gpu
from tta_energy.fileio import atomic_path
from tta_energy.models.base import GenerationOutput

#: what reading a damaged ``.npz`` raises (cut or emptied in transfer, a member's checksum wrong): such a
#: reference is not stored, and the next call computes it again
UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def _models_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "models"


def _code_of(source: bytes) -> bytes:
    """A Python module's code without its comments, docstrings and layout (its syntax tree), so that editing
    the prose of a model's module keeps its stored references. The tree's dump differs between Python
    versions, so another Python computes the references again (as another torch does)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


@functools.cache
def code_version() -> str:
    """sha256 (16 hex digits) of the code the models' outputs depend on: every file under
    ``tta_energy/models`` (adapters import each other's blocks and pipelines, the catalogue holds the
    generation defaults, the configs the shapes; a Python module by its code, :func:`_code_of`) and the
    diffusers and transformers versions their classes and seeded initialisation come from. Any change there
    computes every model's references again (one fp32 generation per step count), which is cheaper than a
    stale reference judging a configuration."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    root = _models_dir()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f.relative_to(root).as_posix().encode())
        digest.update(_code_of(f.read_bytes()) if f.suffix == ".py" else f.read_bytes())
    for package in ("diffusers", "transformers"):
        try:
            digest.update(f"{package}=={version(package)}".encode())
        except PackageNotFoundError:
            digest.update(f"{package} missing".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ReferenceKey:
    """What a reference output depends on."""

    model: str
    size: str
    weights: str
    steps: int
    batch: int
    duration_s: float
    seed: int
    prompt: str
    code: str  # code_version()
    torch: str
    device: str  # e.g. the GPU's name

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def path(self, folder: Path) -> Path:
        return Path(folder) / f"{self.model}-{self.size}-{self.steps}steps-b{self.batch}-{self.digest}.npz"


def device_label(device: str) -> str:
    """The device a reference ran on, as a key field: the GPU's name, else ``cpu``."""
    import torch

    if is_gpu(device) and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return str(device)


def load_reference(key: ReferenceKey, folder: Path) -> tuple[GenerationOutput, float] | None:
    """The stored output and weights fingerprint of ``key``, or None when not stored (or unreadable)."""
    path = key.path(folder)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if json.loads(str(data["key"])) != asdict(key):
                return None
            latents = np.array(data["latents"]) if data["has_latents"] else None
            out = GenerationOutput(np.array(data["waveforms"]), int(data["sample_rate"]),
                                   int(data["denoiser_calls"]), latents)
            return out, float(data["fingerprint"])
    except UNREADABLE:
        return None


def store_reference(key: ReferenceKey, folder: Path, out: GenerationOutput, fingerprint: float) -> Path:
    """Write ``out`` (latents and waveforms as float32) under ``key``, atomically."""
    latents = out.latents
    if latents is not None and hasattr(latents, "detach"):
        latents = latents.detach().float().cpu().numpy()
    buf = io.BytesIO()
    np.savez_compressed(buf, key=json.dumps(asdict(key)), waveforms=np.asarray(out.waveforms, np.float32),
                        sample_rate=out.sample_rate, denoiser_calls=out.denoiser_calls,
                        has_latents=latents is not None,
                        latents=np.asarray(latents if latents is not None else [], np.float32),
                        fingerprint=fingerprint)
    path = key.path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def stored_keys(folder: Path, model: str, size: str, steps: int) -> list[dict]:
    """The keys of every stored batch-1 reference of (model, size, steps) in ``folder``, as dicts."""
    keys = []
    for path in sorted(Path(folder).glob(f"{model}-{size}-{steps}steps-b1-*.npz")):
        try:
            with np.load(path, allow_pickle=False) as data:
                keys.append(json.loads(str(data["key"])))
        except UNREADABLE:
            continue
    return keys


def prune_stale(folder: Path, device: str, torch_version: str, code: str) -> list[Path]:
    """Remove the references in ``folder`` computed on ``device`` with another torch or models' code than
    ``torch_version`` and ``code``: no later call on that device can load them, and the folder travels with
    every device call, whose working tree is bounded (64 MiB). References of other devices, and unreadable
    files (computed again anyway), are left alone. Returns the removed paths."""
    removed = []
    for path in sorted(Path(folder).glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as data:
                key = json.loads(str(data["key"]))
        except UNREADABLE:
            continue
        if key.get("device") == device and (key.get("torch"), key.get("code")) != (torch_version, code):
            path.unlink()
            removed.append(path)
    return removed


def prune_stale_here(folder: Path) -> list[Path]:
    """:func:`prune_stale` for this process's device (``cuda:0`` when there is one), torch and code."""
    import torch

    device = device_label("cuda:0" if torch.cuda.is_available() else "cpu")
    return prune_stale(folder, device, torch.__version__, code_version())
