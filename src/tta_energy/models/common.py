"""Helpers shared by the model adapters: bundled configs, building on a device, synthetic token ids."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from tta_energy.errors import ModelError

CONFIG_ROOT = "models/configs"


def config_path(model_dir: str, filename: str) -> Path:
    """Path of a bundled config file, e.g. ``config_path("audioldm", "unet_config.reconstructed.json")``."""
    path = Path(str(resources.files("tta_energy").joinpath(CONFIG_ROOT, model_dir, filename)))
    if not path.is_file():
        raise ModelError(f"bundled config {model_dir}/{filename} is missing from the package")
    return path


def load_config(model_dir: str, filename: str) -> dict[str, Any]:
    """A bundled JSON/YAML config; JSON keys starting with '_' (notes, class names) are dropped."""
    path = config_path(model_dir, filename)
    if path.suffix in (".yaml", ".yml"):
        return yaml.safe_load(path.read_text())
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


@contextlib.contextmanager
def default_device(device: torch.device | str) -> Iterator[None]:
    """Create modules directly on ``device`` (``meta`` allocates nothing: used for full-size counts)."""
    with torch.device(device):
        yield


@contextlib.contextmanager
def seeded_init(device: torch.device) -> Iterator[None]:
    """Deterministic random weights (seed 0) without touching the caller's RNG state."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda" if devices else "cpu"):
        torch.manual_seed(0)
        yield


def resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("a CUDA device was asked for but torch sees no GPU")
    return device


def cached_hub_repo(repo_id: str, allow_patterns: list[str] | None = None) -> Path:
    """The local snapshot of hub repo ``repo_id`` (only the files matching ``allow_patterns`` when given);
    downloads only when HF_HUB_OFFLINE is unset, else one clear error."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=repo_id, allow_patterns=allow_patterns))
    except Exception as exc:
        offline = hub_offline()
        raise ModelError(
            f"weights {repo_id!r} is neither a local folder nor a cached hub repo "
            f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')}): {type(exc).__name__}"
            + (f"; fill the cache on a machine with internet access (hf download {repo_id}), or give a folder"
               if offline else "")
        ) from None


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no hub call (only the local cache is read)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def synthetic_token_ids(batch: int, length: int, vocab_size: int, *, bos: int | None = None,
                        eos: int | None = None, pad: int | None = None, content_tokens: int | None = None,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of the real sequence length for replicas without vocabulary files.

    ``content_tokens`` non-pad tokens (all when None), framed by ``bos``/``eos`` where the tokenizer adds
    them, then ``pad`` up to ``length``. Returns (input_ids, attention_mask). The ids are deterministic in
    ``seed``; their values do not change compute, only the sequence length does.
    """
    g = torch.Generator().manual_seed(seed)
    n = length if content_tokens is None else min(length, content_tokens)
    low = 5 if vocab_size > 10 else 0
    ids = torch.full((batch, length), pad if pad is not None else 0, dtype=torch.long)
    mask = torch.zeros((batch, length), dtype=torch.long)
    body = torch.randint(low, vocab_size, (batch, n), generator=g)
    if bos is not None:
        body[:, 0] = bos
    if eos is not None:
        body[:, n - 1] = eos
    ids[:, :n] = body
    mask[:, :n] = 1
    return ids, mask


def check_weights_dir(path: str | Path, required: list[str], name: str | None = None,
                      *, files: bool = False) -> Path:
    """A local weights folder must exist and hold ``required`` entries; else one clear error.

    With ``name`` (a model name) the path must also be a folder and the errors name the model; with
    ``files`` each required entry must be a file, not just exist."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"weights path {p} does not exist")
    if name is not None and not p.is_dir():
        raise ModelError(f"weights path {p} is not a folder (expected {name}'s checkpoint folder)")
    missing = [r for r in required if not ((p / r).is_file() if files else (p / r).exists())]
    if missing:
        model = f" for {name}" if name is not None else ""
        raise ModelError(f"weights path {p} has the wrong layout{model}: missing {', '.join(missing)}")
    return p


def cast_module(module: torch.nn.Module, device: torch.device | None, dtype: torch.dtype) -> torch.nn.Module:
    """Move/cast as ``from_pretrained(torch_dtype=...)`` would, then eval mode without gradients.

    transformers keeps a model's ``_keep_in_fp32_modules`` in float32 when loading in float16 (T5: the
    feed-forward output ``wo``), so the replicas and the lever's precision switch do the same. Plain
    ``nn.Module.to`` is used because diffusers' override only adds a notice about such modules (its classes
    here have none)."""
    torch.nn.Module.to(module, device=device, dtype=dtype)
    keep = set(getattr(module, "_keep_in_fp32_modules", None) or ()) if dtype == torch.float16 else set()
    for name, sub in module.named_modules():
        if name.rsplit(".", 1)[-1] in keep:
            torch.nn.Module.to(sub, dtype=torch.float32)
    return module.eval().requires_grad_(False)
