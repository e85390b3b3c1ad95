"""Tango's checkpoint layout: its VAE and HiFi-GAN key names mapped to the diffusers/transformers modules the
adapter builds, and strict, one-line-error loading of its ``.bin`` state dicts."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from tta_energy.errors import ModelError

_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def tango_vae_key(key: str, levels: int) -> tuple[str, bool]:
    """A diffusers ``AutoencoderKL`` key -> Tango's (AudioLDM/LDM) VAE key, and whether it is a mid-block
    attention weight (a Linear in diffusers, a 1x1 Conv2d in Tango)."""
    m = re.match(
        r"^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(\w+)$", key
    )
    if m:
        part, layer, tensor = m.groups()
        return f"{part}.mid.attn_1.{_ATTN[layer]}.{tensor}", layer != "group_norm" and tensor == "weight"
    rules = [
        (r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.", lambda g: f"{g[1]}.mid.block_{int(g[2]) + 1}."),
        (r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", lambda g: f"encoder.down.{g[1]}.block.{g[2]}."),
        (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", lambda g: f"encoder.down.{g[1]}.downsample."),
        (
            r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
            lambda g: f"decoder.up.{levels - 1 - int(g[1])}.block.{g[2]}.",
        ),
        (
            r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
            lambda g: f"decoder.up.{levels - 1 - int(g[1])}.upsample.",
        ),
        (r"^(encoder|decoder)\.conv_norm_out\.", lambda g: f"{g[1]}.norm_out."),
    ]
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            key = repl(m) + key[m.end() :]
            break
    return key.replace(".conv_shortcut.", ".nin_shortcut."), False


def tango_vocoder_key(key: str) -> str | None:
    """A ``SpeechT5HifiGan`` key -> Tango's HiFi-GAN key under ``vocoder.`` (None: mean/scale buffers, which
    Tango's generator does not have; they are unused with ``normalize_before=False``)."""
    if key in ("mean", "scale"):
        return None
    return "vocoder." + re.sub(r"^upsampler\.", "ups.", key)


def key_mismatch(file: str, missing: list[str], unexpected: list[str], shapes: list[str]) -> ModelError:
    """One line listing the first missing, unexpected and wrongly shaped keys of a checkpoint file."""
    def show(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {show(sorted(missing))}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {show(sorted(unexpected))}")
    if shapes:
        parts.append(f"{len(shapes)} wrong shapes: {show(shapes)}")
    return ModelError(f"checkpoint {file} does not match the tango architecture: " + "; ".join(parts))


def check_keys(
    file: str,
    state: dict[str, torch.Tensor],
    expected: dict[str, torch.Size],
    optional: set[str] = frozenset(),
) -> None:
    """Raise :func:`key_mismatch`'s error unless ``state`` has exactly the ``expected`` keys and shapes
    (``optional`` keys may be absent)."""
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(s)}"
        for k, s in expected.items()
        if k in state and tuple(state[k].shape) != tuple(s)
    ]
    if missing or unexpected or shapes:
        raise key_mismatch(file, missing, unexpected, shapes)


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Assign ``state`` (already checked) to a module built on the meta device."""
    module.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise ModelError(f"tango weights left {len(left)} tensors unset: {', '.join(left[:5])}")


def torch_load(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict (a Lightning ``{"state_dict": ...}`` unwrapped); one clear line otherwise."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: one clear line
        raise ModelError(
            f"cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path} does not hold a state dict")
    return state


# -- the adapter --------------------------------------------------------------------------------------
