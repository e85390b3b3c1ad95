"""Tango and Tango 2 (``tango``, ``tango2``): declare-lab's latent diffusion models, on diffusers classes.

Tango 2 is Tango with DPO-fine-tuned UNet weights: identical architecture and sampling, so both names share
one adapter class and differ only in the name and the checkpoint.

Components (real diffusers/transformers classes, bundled configs in ``configs/tango/``):

* ``text_encoder``: transformers ``T5EncoderModel`` with google/flan-t5-large shapes (frozen in Tango);
* ``unet``: diffusers ``UNet2DConditionModel`` from ``diffusion_model_config.json`` (Tango's file,
  verbatim);
* ``vae``: diffusers ``AutoencoderKL`` equivalent to Tango's own AudioLDM ``AutoencoderKL``
  (``vae_config.json``'s ``ddconfig`` is translated to diffusers arguments by :func:`diffusers_vae_config`);
* ``vocoder``: transformers ``SpeechT5HifiGan`` equivalent to the HiFi-GAN ``HIFIGAN_16K_64`` that Tango
  builds inside its VAE (the dict is translated by :func:`hifigan_config`);
* ``scheduler``: diffusers ``DDPMScheduler`` (Tango loads Stable Diffusion 2.1's scheduler config; assumed
  values).

Sampling is this project's own short loop following Tango's ``AudioDiffusion.inference``: fixed latents
``(B, 8, 256, 16)`` (10.24 s), the unconditional prompt ``""`` padded to the prompt's token length, guidance
3, ``scheduler.set_timesteps(steps)``, one UNet call per step on ``cat([latents] * 2)`` with the boolean
text mask, then VAE decode -> mel ``(B, 1, 1024, 64)`` -> HiFi-GAN -> 163840 samples at 16 kHz, centred as
Tango's ``vocoder_infer`` does (returned as float32 instead of Tango's int16; HiFi-GAN's 32 extra samples
past 10.24 s are cropped).

Study details kept on purpose:

* Tango has no negative-prompt argument: the unconditional prompt is always ``""``. A negative prompt in the
  request is ignored with a warning (so that a sweep passing "Low quality." to every model still runs).
* Tango always generates 10.24 s: a duration other than 10 or 10.24 s is rejected.
* The study's batch experiment called ``generate_for_batch``, whose default ``batch_size=8`` splits 10
  prompts into 8 + 2 (UNet batches 16 and 4). ``request.extra["max_batch"]`` (default 8; ``0``/``None`` = no
  split) mirrors it: the request's clips (each prompt repeated ``waveforms_per_prompt`` times) run in chunks
  of at most ``max_batch``. Each phase covers all chunks (all text encodings, then all denoising loops,
  ...), so a meter sees each phase once; the work is the same as Tango's chunk-by-chunk order.
* Text tokens: with real weights, the flan-t5-large tokenizer (``tokenizer/`` in the weights folder, or the
  hub cache). Without one (replicas), synthetic ids of an estimated real length (:func:`estimate_t5_tokens`:
  one token per word or punctuation mark + EOS; the study's prompt gives 19, the real tokenizer ~20).
  ``describe`` uses 20.
* The tiny size has the same block structure with small widths; its latent length is 24 frames (0.96 s)
  instead of 256, the nearest multiple of the UNet's 8x downsampling to 1 s.

Real weights use Tango's own checkpoint layout (the declare-lab hub repos): ``main_config.json``,
``pytorch_model_main.bin`` (Tango's ``AudioDiffusion`` state dict: ``unet.*`` and ``text_encoder.*``),
``vae_config.json``, ``pytorch_model_vae.bin`` (AudioLDM VAE keys ``encoder.down.0.block.0...``,
``decoder.up...``, ``quant_conv``, ``post_quant_conv`` and the HiFi-GAN under ``vocoder.*``) and
``stft_config.json`` (``pytorch_model_stft.bin`` holds the training-time STFT, unused at inference and not
read). The keys are mapped explicitly to the diffusers/transformers modules; a mismatch fails with the list
of missing/unexpected keys.
"""

from __future__ import annotations

import json
import re
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from tta_energy.fileio import torch_save_atomic, write_json_atomic
from tta_energy.models.base import (
    UNET_BLOCKS,
    GenerationOutput,
    GenerationRequest,
    ModelAdapter,
    ModelDefaults,
    ModelError,
    ModuleCall,
    PhaseHook,
    no_phases,
)
from tta_energy.models.catalogue import entry
from tta_energy.models.common import (
    cached_hub_repo,
    cast_module,
    config_path,
    default_device,
    load_config,
)
from tta_energy.models.tango_checkpoint import (
    check_keys,
    load_into,
    tango_vae_key,
    tango_vocoder_key,
    torch_load,
)
from tta_energy.models.weights import looks_like_hub_id

if TYPE_CHECKING:
    from diffusers import SchedulerMixin
    from transformers import PreTrainedTokenizerBase, SpeechT5HifiGanConfig, T5Config

CONFIG_DIR = "tango"
T5_EOS, T5_PAD = 1, 0
#: T5 token length ``describe`` assumes for a Tango prompt (20 for the study's prompt).
DESCRIBE_TEXT_TOKENS = 20
DEFAULT_MAX_BATCH = 8  # Tango's generate_for_batch(batch_size=8)

#: Tango's file names (declare-lab hub repos).
MAIN_CONFIG, MAIN_WEIGHTS = "main_config.json", "pytorch_model_main.bin"
VAE_CONFIG, VAE_WEIGHTS = "vae_config.json", "pytorch_model_vae.bin"
STFT_CONFIG = "stft_config.json"
#: Extra files that only non-standard sizes (tiny) need: Tango's layout takes these shapes from its code.
UNET_CONFIG_FILE, TEXT_ENCODER_DIR, VOCODER_CONFIG_FILE = (
    "unet_config.json",
    "text_encoder",
    "vocoder_config.json",
)
BUNDLED_UNET_CONFIGS = ("diffusion_model_config.json", "diffusion_model_xl_config.json")
FLAN_T5_LARGE = "google/flan-t5-large"

# -- tiny variant: same classes and block structure, small widths -----------------------------------------
TINY_TEXT_ENCODER = {
    "vocab_size": 32128,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
}
TINY_UNET_OVERRIDES = {
    "block_out_channels": [32, 64, 64, 64],
    "attention_head_dim": [1, 2, 2, 2],
    "cross_attention_dim": 32,
}
TINY_VAE_DDCONFIG = {"ch": 32}
TINY_VOCODER = {"upsample_initial_channel": 32}
LATENT_FRAMES = {"full": 256, "tiny": 24}  # Tango hard-codes 256 x 16 (10.24 s); tiny: 0.96 s


# -- helpers shared with the Stable Audio Open adapter ----------------------------------------------------
def estimate_t5_tokens(prompt: str) -> int:
    """Approximate T5 SentencePiece length: one token per word or punctuation mark, plus EOS."""
    return len(re.findall(r"\w+|[^\w\s]", prompt)) + 1


class T5Text:
    """T5 token ids: the real tokenizer when there is one, else synthetic ids of the estimated real length."""

    def __init__(self, tokenizer: Any | None, max_length: int, vocab_size: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.vocab_size = vocab_size

    @property
    def synthetic(self) -> bool:
        return self.tokenizer is None

    def tokenize(
        self, prompts: list[str], padding: str, device: torch.device, length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, mask). ``padding``: ``"longest"`` (Tango), or ``"max_length"`` to ``length`` (default
        ``max_length``: 128 for Stable Audio Open; Tango pads ``""`` to the prompt's length)."""
        target = self.max_length if length is None else length
        if self.tokenizer is not None:
            out = self.tokenizer(
                prompts, padding=padding, max_length=target, truncation=True, return_tensors="pt"
            )
            return out.input_ids.to(device), out.attention_mask.to(device)
        counts = [min(estimate_t5_tokens(p) if p else 1, target) for p in prompts]
        width = max(counts) if padding == "longest" else target
        ids = torch.full((len(prompts), width), T5_PAD, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, (prompt, n) in enumerate(zip(prompts, counts, strict=True)):
            g = torch.Generator().manual_seed(zlib.crc32(prompt.encode()))
            ids[row, : n - 1] = torch.randint(5, self.vocab_size, (n - 1,), generator=g)
            ids[row, n - 1] = T5_EOS
            mask[row, :n] = 1
        return ids.to(device), mask.to(device)


# -- configs -----------------------------------------------------------------------------------------
def t5_config(cfg: dict[str, Any]) -> T5Config:
    from transformers import T5Config

    kwargs = {k: v for k, v in cfg.items() if not k.startswith("_") and k != "tokenizer_model_max_length"}
    kwargs.update(is_encoder_decoder=False, use_cache=False)  # the encoder alone, as T5EncoderModel uses it
    return T5Config(**kwargs)


def diffusers_vae_config(tango_vae_config: dict[str, Any]) -> dict[str, Any]:
    """Tango's AudioLDM ``AutoencoderKL(**vae_config)`` arguments -> diffusers ``AutoencoderKL`` arguments."""
    dd = tango_vae_config.get("ddconfig")
    if not isinstance(dd, dict):
        raise ModelError("vae_config.json has no 'ddconfig' section: not a Tango VAE config")
    if dd.get("attn_resolutions"):
        raise ModelError(
            "vae_config.json: attention inside the VAE levels (attn_resolutions) is not supported"
        )
    if int(tango_vae_config.get("embed_dim", dd["z_channels"])) != int(dd["z_channels"]) or not dd.get(
        "double_z", True
    ):
        raise ModelError("vae_config.json: embed_dim must equal z_channels with double_z (as in Tango)")
    if int(tango_vae_config.get("subband", 1)) != 1:
        raise ModelError("vae_config.json: subband decomposition is not supported (Tango uses subband 1)")
    levels = len(dd["ch_mult"])
    scale = tango_vae_config.get("scale_factor")
    return {
        "in_channels": int(dd["in_channels"]),
        "out_channels": int(dd["out_ch"]),
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [int(dd["ch"]) * int(m) for m in dd["ch_mult"]],
        "layers_per_block": int(dd["num_res_blocks"]),
        "latent_channels": int(dd["z_channels"]),
        "norm_num_groups": 32,
        "sample_size": int(dd.get("resolution", 256)),
        "scaling_factor": float(scale) if scale is not None else 1.0,
    }


def hifigan_config(cfg: dict[str, Any]) -> SpeechT5HifiGanConfig:
    """Tango/AudioLDM ``HIFIGAN_16K_64`` dict -> transformers ``SpeechT5HifiGanConfig``."""
    from transformers import SpeechT5HifiGanConfig

    return SpeechT5HifiGanConfig(
        model_in_dim=int(cfg["num_mels"]),
        sampling_rate=int(cfg["sampling_rate"]),
        upsample_initial_channel=int(cfg["upsample_initial_channel"]),
        upsample_rates=list(cfg["upsample_rates"]),
        upsample_kernel_sizes=list(cfg["upsample_kernel_sizes"]),
        resblock_kernel_sizes=list(cfg["resblock_kernel_sizes"]),
        resblock_dilation_sizes=[list(d) for d in cfg["resblock_dilation_sizes"]],
        normalize_before=False,
    )


def bundled_configs(size: str) -> dict[str, dict[str, Any]]:
    """The Tango configs of ``size``: unet (diffusers), text_encoder (T5), vae (Tango format), vocoder
    (HiFi-GAN dict), main, stft, scheduler."""
    unet = load_config(CONFIG_DIR, "diffusion_model_config.json")
    text = load_config("audioldm2", "text_encoder_2_config.reconstructed.json")  # flan-t5-large shapes
    vae = json.loads(config_path(CONFIG_DIR, "vae_config.reconstructed.json").read_text())
    vae = {k: v for k, v in vae.items() if not k.startswith("_")}
    vae["scale_factor"] = 1.0 if vae.get("scale_factor") is None else vae["scale_factor"]  # replicas: 1.0
    vocoder = load_config(CONFIG_DIR, "vocoder_HIFIGAN_16K_64.json")
    if size == "tiny":
        unet.update(TINY_UNET_OVERRIDES)
        text = dict(TINY_TEXT_ENCODER)
        vae["ddconfig"] = {**vae["ddconfig"], **TINY_VAE_DDCONFIG}
        vocoder.update(TINY_VOCODER)
    text.pop("tokenizer_model_max_length", None)
    return {
        "unet": unet,
        "text_encoder": text,
        "vae": vae,
        "vocoder": vocoder,
        "main": load_config(CONFIG_DIR, "main_config.reconstructed.json"),
        "stft": load_config(CONFIG_DIR, "stft_config.reconstructed.json"),
        "scheduler": load_config(CONFIG_DIR, "scheduler_config.assumed.json"),
    }


class TangoAdapter(ModelAdapter):
    """Tango (declare-lab/tango-full in the study) behind the common adapter interface."""

    name = "tango"
    defaults: ClassVar[ModelDefaults] = entry("tango").defaults
    denoiser_name = "unet"
    repeated_blocks = UNET_BLOCKS

    def __init__(
        self,
        *,
        size: str,
        weights: str,
        device: torch.device,
        dtype: torch.dtype,
        text_encoder: torch.nn.Module,
        unet: torch.nn.Module,
        vae: torch.nn.Module,
        vocoder: torch.nn.Module,
        scheduler: SchedulerMixin,
        configs: dict[str, dict[str, Any]],
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        super().__init__(size=size, weights=weights, device=device, dtype=dtype)
        self.text_encoder = text_encoder
        self._denoiser = unet
        self.vae = vae
        self.vocoder = vocoder
        self.scheduler = scheduler
        self.configs = configs  # Tango-format configs, written back by save_pretrained
        self.text = T5Text(
            tokenizer,
            max_length=getattr(tokenizer, "model_max_length", 512) or 512,
            vocab_size=text_encoder.config.vocab_size,
        )
        self.latent_frames = LATENT_FRAMES[size]
        self.latent_bins = 16  # 64 mel bins / 4 (the VAE's two 2x upsamplings)

    # -- construction: the template is ModelAdapter.build ------------------------------------------
    @classmethod
    def _build_random(cls, size: str, device: torch.device, dtype: torch.dtype) -> TangoAdapter:
        configs = bundled_configs(size)
        modules = cls._modules(configs, device)
        return cls._assemble(size, "random", device, dtype, modules, configs, tokenizer=None)

    @staticmethod
    def _modules(configs: dict[str, dict[str, Any]], device: torch.device) -> dict[str, torch.nn.Module]:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import SpeechT5HifiGan, T5EncoderModel

        with default_device(device):
            return {
                "text_encoder": T5EncoderModel(t5_config(configs["text_encoder"])),
                "unet": UNet2DConditionModel.from_config(configs["unet"]),
                "vae": AutoencoderKL(**diffusers_vae_config(configs["vae"])),
                "vocoder": SpeechT5HifiGan(hifigan_config(configs["vocoder"])),
            }

    @classmethod
    def _assemble(
        cls,
        size: str,
        weights: str,
        device: torch.device,
        dtype: torch.dtype,
        modules: dict[str, torch.nn.Module],
        configs: dict[str, dict[str, Any]],
        tokenizer: Any | None,
    ) -> TangoAdapter:
        from diffusers import DDPMScheduler

        for m in modules.values():
            cast_module(m, device, dtype)
        scheduler = DDPMScheduler.from_config(configs["scheduler"])
        return cls(
            size=size,
            weights=weights,
            device=device,
            dtype=dtype,
            scheduler=scheduler,
            configs=configs,
            tokenizer=tokenizer,
            **modules,
        )

    @classmethod
    def _resolve_folder(cls, weights: str) -> Path:
        path = Path(weights)
        if not path.exists():
            if not looks_like_hub_id(weights):
                raise ModelError(f"weights path {weights} does not exist")
            path = cached_hub_repo(weights)  # a hub repo in the local cache (honours HF_HUB_OFFLINE)
        required = [MAIN_CONFIG, MAIN_WEIGHTS, VAE_CONFIG, VAE_WEIGHTS]
        missing = [r for r in required if not (path / r).is_file()]
        if missing:
            raise ModelError(
                f"weights path {path} has the wrong layout for {cls.name} (Tango's checkpoint "
                f"folder): missing {', '.join(missing)}"
            )
        return path

    @classmethod
    def _read_configs(cls, folder: Path, size: str) -> dict[str, dict[str, Any]]:
        configs = bundled_configs(size)

        def read_json(p: Path) -> dict[str, Any]:
            try:
                return json.loads(p.read_text())
            except (OSError, ValueError) as exc:
                raise ModelError(f"cannot read {p}: {exc}") from None

        main = read_json(folder / MAIN_CONFIG)
        configs["main"] = main
        configs["vae"] = read_json(folder / VAE_CONFIG)
        if (folder / STFT_CONFIG).is_file():
            configs["stft"] = read_json(folder / STFT_CONFIG)
        unet_ref = main.get("unet_model_config_path") or ""
        if unet_ref and (folder / unet_ref).is_file():
            configs["unet"] = read_json(folder / unet_ref)
        elif Path(unet_ref).name in BUNDLED_UNET_CONFIGS:
            configs["unet"] = load_config(CONFIG_DIR, Path(unet_ref).name)
        else:
            raise ModelError(
                f"{folder / MAIN_CONFIG}: unet_model_config_path {unet_ref!r} is neither a file in "
                f"the folder nor one of Tango's configs ({', '.join(BUNDLED_UNET_CONFIGS)})"
            )
        text_ref = main.get("text_encoder_name") or ""
        if text_ref and (folder / text_ref / "config.json").is_file():
            configs["text_encoder"] = read_json(folder / text_ref / "config.json")
        elif text_ref == FLAN_T5_LARGE:
            configs["text_encoder"] = load_config("audioldm2", "text_encoder_2_config.reconstructed.json")
        else:
            raise ModelError(
                f"{folder / MAIN_CONFIG}: text_encoder_name {text_ref!r} is not supported "
                f"(expected {FLAN_T5_LARGE} or a folder holding a T5 config.json)"
            )
        if (folder / VOCODER_CONFIG_FILE).is_file():
            configs["vocoder"] = read_json(folder / VOCODER_CONFIG_FILE)
        return configs

    @staticmethod
    def _tokenizer(folder: Path, main: dict[str, Any]) -> Any | None:
        """flan-t5-large's tokenizer: ``tokenizer/`` in the folder, else the hub cache; None if neither."""
        from transformers import AutoTokenizer

        for source in (folder / "tokenizer", main.get("text_encoder_name")):
            if not source or (isinstance(source, Path) and not source.is_dir()):
                continue
            if isinstance(source, str) and (folder / source).exists():
                continue  # a local config-only folder (tiny checkpoints): no vocabulary there
            try:
                return AutoTokenizer.from_pretrained(str(source))
            except Exception:  # not cached / offline: fall back to synthetic ids below
                continue
        warnings.warn(
            "tango: no flan-t5 tokenizer found (folder or hub cache); using synthetic token ids of the "
            "estimated prompt length",
            stacklevel=3,
        )
        return None

    @classmethod
    def _load_weights(
        cls, weights: str, size: str, device: torch.device, dtype: torch.dtype
    ) -> TangoAdapter:
        """Tango's own checkpoint folder (or a cached hub repo of it)."""
        folder = cls._resolve_folder(weights)
        configs = cls._read_configs(folder, size)
        modules = cls._modules(configs, torch.device("meta"))
        # AudioDiffusion's state dict: unet.* and text_encoder.*
        main_state = torch_load(folder / MAIN_WEIGHTS)
        unet_sd = {f"unet.{k}": v.shape for k, v in modules["unet"].state_dict().items()}
        text_sd = {f"text_encoder.{k}": v.shape for k, v in modules["text_encoder"].state_dict().items()}
        tied = {"text_encoder.encoder.embed_tokens.weight"}  # tied to shared.weight; older saves may omit it
        check_keys(MAIN_WEIGHTS, main_state, {**unet_sd, **text_sd}, optional=tied)
        load_into(modules["unet"], {k[5:]: v for k, v in main_state.items() if k.startswith("unet.")})
        text_state = {k[13:]: v for k, v in main_state.items() if k.startswith("text_encoder.")}
        text_state.setdefault("encoder.embed_tokens.weight", text_state["shared.weight"])
        load_into(modules["text_encoder"], text_state)
        modules["text_encoder"].tie_weights()
        # Tango's VAE state dict: LDM encoder/decoder keys + the HiFi-GAN under vocoder.*
        vae_state = torch_load(folder / VAE_WEIGHTS)
        vae_pairs, voc_pairs = cls._vae_key_pairs(modules["vae"], modules["vocoder"])
        expected = {
            t: modules["vae"].state_dict()[d].shape
            if not conv
            else (*modules["vae"].state_dict()[d].shape, 1, 1)
            for d, (t, conv) in vae_pairs.items()
        }
        expected.update({t: modules["vocoder"].state_dict()[d].shape for d, t in voc_pairs.items()})
        check_keys(VAE_WEIGHTS, vae_state, expected)
        vae_sd = {
            d: vae_state[t].reshape(vae_state[t].shape[:2]) if conv else vae_state[t]
            for d, (t, conv) in vae_pairs.items()
        }
        load_into(modules["vae"], vae_sd)
        voc_sd = {d: vae_state[t] for d, t in voc_pairs.items()}
        n_mels = modules["vocoder"].config.model_in_dim
        voc_sd.update({"mean": torch.zeros(n_mels), "scale": torch.ones(n_mels)})
        load_into(modules["vocoder"], voc_sd)
        return cls._assemble(
            size,
            str(weights),
            device,
            dtype,
            modules,
            configs,
            tokenizer=cls._tokenizer(folder, configs["main"]),
        )

    @staticmethod
    def _vae_key_pairs(
        vae: torch.nn.Module, vocoder: torch.nn.Module
    ) -> tuple[dict[str, tuple[str, bool]], dict[str, str]]:
        levels = len(vae.config.block_out_channels)
        vae_pairs = {k: tango_vae_key(k, levels) for k in vae.state_dict()}
        voc_pairs = {k: t for k in vocoder.state_dict() if (t := tango_vocoder_key(k)) is not None}
        return vae_pairs, voc_pairs

    def save_pretrained(self, path: str | Path) -> None:
        """Tango's checkpoint layout: file names and state-dict key names as in declare-lab's hub repos.

        Full size writes exactly Tango's files (the UNet/T5/HiFi-GAN shapes come from Tango's code/configs).
        Other sizes also write the configs Tango's layout does not carry (``unet_config.json``,
        ``text_encoder/config.json``, ``vocoder_config.json``), referenced from ``main_config.json``.
        The training-time STFT weights (``pytorch_model_stft.bin``) are not written: inference never uses
        them.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        main = dict(self.configs["main"])
        if self.size != "full":
            main["unet_model_config_path"] = UNET_CONFIG_FILE
            main["text_encoder_name"] = TEXT_ENCODER_DIR
            write_json_atomic(folder / UNET_CONFIG_FILE, dict(self.denoiser.config))
            (folder / TEXT_ENCODER_DIR).mkdir(exist_ok=True)
            write_json_atomic(folder / TEXT_ENCODER_DIR / "config.json", self.text_encoder.config.to_dict())
            write_json_atomic(folder / VOCODER_CONFIG_FILE, self.configs["vocoder"])
        vae_cfg = dict(self.configs["vae"])
        vae_cfg["scale_factor"] = float(self.vae.config.scaling_factor)
        main_state = {f"unet.{k}": v.cpu() for k, v in self.denoiser.state_dict().items()}
        main_state.update({f"text_encoder.{k}": v.cpu() for k, v in self.text_encoder.state_dict().items()})
        vae_pairs, voc_pairs = self._vae_key_pairs(self.vae, self.vocoder)
        vae_sd, voc_sd = self.vae.state_dict(), self.vocoder.state_dict()
        vae_state = {
            t: (vae_sd[d][:, :, None, None] if conv else vae_sd[d]).cpu()
            for d, (t, conv) in vae_pairs.items()
        }
        vae_state.update({t: voc_sd[d].cpu() for d, t in voc_pairs.items()})
        torch_save_atomic(main_state, folder / MAIN_WEIGHTS)
        torch_save_atomic(vae_state, folder / VAE_WEIGHTS)
        write_json_atomic(folder / MAIN_CONFIG, main)
        write_json_atomic(folder / VAE_CONFIG, vae_cfg)
        write_json_atomic(folder / STFT_CONFIG, self.configs["stft"])

    def components(self) -> dict[str, torch.nn.Module]:
        return {
            "text_encoder": self.text_encoder,
            "unet": self.denoiser,
            "vae": self.vae,
            "vocoder": self.vocoder,
        }

    # -- generation -----------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.config.sampling_rate)

    @property
    def clip_seconds(self) -> float:
        """Audio length of one clip: latent frames x 4 (VAE) x hop 160 / 16 kHz = 10.24 s at full size."""
        return self.latent_frames * 4 * int(np.prod(self.vocoder.config.upsample_rates)) / self.sample_rate

    def latent_seconds(self, duration_s: float) -> float:
        """Tango always computes its fixed clip (10.24 s at full size, 0.96 s tiny), whatever is asked."""
        return float(self.clip_seconds)

    def check_request(self, request: GenerationRequest) -> None:
        super().check_request(request)  # the catalogue's fixed clip of each size
        max_batch = request.extra.get("max_batch", DEFAULT_MAX_BATCH)
        if max_batch is not None and (not isinstance(max_batch, int) or max_batch < 0):
            raise ModelError(f"max_batch must be a non-negative integer (0: no split), got {max_batch!r}")

    @staticmethod
    def chunks(request: GenerationRequest) -> list[list[str]]:
        """The request's clips (each prompt ``waveforms_per_prompt`` times) in runs of at most ``max_batch``,
        as Tango's ``generate_for_batch(prompts, batch_size=max_batch)`` splits its prompt list."""
        clips = [p for p in request.prompts for _ in range(request.waveforms_per_prompt)]
        max_batch = request.extra.get("max_batch", DEFAULT_MAX_BATCH) or len(clips)
        return [clips[i : i + max_batch] for i in range(0, len(clips), max_batch)]

    def _encode(self, prompts: list[str], cfg: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Tango's ``encode_text_classifier_free``: prompts padded to the longest, ``""`` padded to that
        length,         each encoded in its own T5 call; returns ([uncond, cond] embeddings, boolean mask)."""
        ids, mask = self.text.tokenize(prompts, padding="longest", device=self.device)
        embeds = self.text_encoder(input_ids=ids, attention_mask=mask)[0]
        if cfg:
            u_ids, u_mask = self.text.tokenize(
                [""] * len(prompts), padding="max_length", device=self.device, length=ids.shape[1]
            )
            u_embeds = self.text_encoder(input_ids=u_ids, attention_mask=u_mask)[0]
            embeds, mask = torch.cat([u_embeds, embeds]), torch.cat([u_mask, mask])
        return embeds, mask == 1

    def _denoise(
        self,
        embeds: torch.Tensor,
        mask: torch.Tensor,
        n: int,
        steps: int,
        guidance: float,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, int]:
        from diffusers.utils.torch_utils import randn_tensor

        cfg = self.defaults.runs_guidance(guidance)
        self.scheduler.set_timesteps(steps, device=self.device)
        shape = (n, self.denoiser.config.in_channels, self.latent_frames, self.latent_bins)
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=embeds.dtype)
        latents = latents * self.scheduler.init_noise_sigma
        calls = 0
        for t in self.scheduler.timesteps:
            model_input = torch.cat([latents] * 2) if cfg else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            pred = self.denoiser(
                model_input, t, encoder_hidden_states=embeds, encoder_attention_mask=mask
            ).sample
            calls += 1
            if cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            latents = self.scheduler.step(pred, t, latents, generator=generator).prev_sample
        return latents, calls

    def _vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """HiFi-GAN on ``(B, 1, T, 64)`` mels, Tango's centring ``wav - (max + min) / 2`` (batch-wide), then
        the crop to ``clip_seconds``: HiFi-GAN's first transposed convolution adds one frame, so it returns
        ``160 T + 32`` samples (Tango keeps them; the crop makes a clip exactly 10.24 s)."""
        wav = self.vocoder(mel.squeeze(1)).float()
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        wav = wav - (wav.max() + wav.min()) / 2
        return wav[:, : round(self.clip_seconds * self.sample_rate)]

    def generate(self, request: GenerationRequest, phases: PhaseHook = no_phases) -> GenerationOutput:
        self.check_request(request)
        req = self.resolved(request)
        self.check_not_meta()
        if req.negative_prompt:
            warnings.warn(
                f'{self.name} has no negative prompt (its unconditional prompt is always ""); '
                f"ignoring {req.negative_prompt!r}",
                stacklevel=2,
            )
        cfg = self.defaults.runs_guidance(req.guidance_scale)
        chunks = self.chunks(req)
        generator = self.generator(req.seed)
        calls = 0
        with torch.inference_mode():
            with phases("text_encoding"):
                conditions = [self._encode(chunk, cfg) for chunk in chunks]
            with phases("denoising"):
                latents = []
                for chunk, (embeds, mask) in zip(chunks, conditions, strict=True):
                    chunk_latents, chunk_calls = self._denoise(
                        embeds, mask, len(chunk), req.steps, req.guidance_scale, generator
                    )
                    latents.append(chunk_latents)
                    calls += chunk_calls
            with phases("decoding"):
                mels = [self.vae.decode(z / self.vae.config.scaling_factor).sample for z in latents]
            with phases("vocoder"):
                waves = torch.cat([self._vocode(mel) for mel in mels])
        waveforms = waves.cpu().numpy().astype(np.float32)[:, None, :]
        return GenerationOutput(
            waveforms=waveforms,
            sample_rate=self.sample_rate,
            denoiser_calls=calls,
            latents=torch.cat(latents),
        )

    # -- describe -------------------------------------------------------------------------------
    def _example_text(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.zeros(batch, DESCRIBE_TEXT_TOKENS, dtype=torch.long, device=self.device)
        return ids, torch.ones_like(ids)

    def denoiser_call(self, duration_s: float = 10.0, batch: int = 1) -> ModuleCall:
        """One UNet step with CFG: ``(2B, 8, 256, 16)`` latents, ``(2B, 20, 1024)`` T5 tokens, bool mask."""
        latents = torch.zeros(
            2 * batch,
            self.denoiser.config.in_channels,
            self.latent_frames,
            self.latent_bins,
            device=self.device,
            dtype=self.dtype,
        )
        context = torch.zeros(
            2 * batch,
            DESCRIBE_TEXT_TOKENS,
            self.denoiser.config.cross_attention_dim,
            device=self.device,
            dtype=self.dtype,
        )
        mask = torch.ones(2 * batch, DESCRIBE_TEXT_TOKENS, dtype=torch.bool, device=self.device)
        timestep = torch.tensor(999, device=self.device)
        return ModuleCall(
            self.denoiser_name,
            self.denoiser,
            (latents, timestep),
            {"encoder_hidden_states": context, "encoder_attention_mask": mask},
        )

    def per_generation_calls(self, duration_s: float = 10.0, batch: int = 1) -> list[ModuleCall]:
        """T5 on the prompt and on ``""`` padded to the prompt length (20 tokens each), the VAE decoder on the
        fixed latents, HiFi-GAN on the ``(B, 1024, 64)`` mel (10.24 s)."""
        ids, mask = self._example_text(batch)
        latents = torch.zeros(
            batch,
            self.vae.config.latent_channels,
            self.latent_frames,
            self.latent_bins,
            device=self.device,
            dtype=self.dtype,
        )
        mel = torch.zeros(
            batch,
            self.latent_frames * 4,
            self.vocoder.config.model_in_dim,
            device=self.device,
            dtype=self.dtype,
        )
        return [
            ModuleCall("text_encoder", self.text_encoder, (), {"input_ids": ids, "attention_mask": mask}),
            ModuleCall(
                "text_encoder (unconditional)",
                self.text_encoder,
                (),
                {"input_ids": ids, "attention_mask": mask},
            ),
            ModuleCall("vae", self.vae, (latents,), method="decode"),
            ModuleCall("vocoder", self.vocoder, (mel,)),
        ]

    def describe_extra(self) -> dict[str, object]:
        return {"t5_tokens": DESCRIBE_TEXT_TOKENS, "latent_shape": [8, self.latent_frames, self.latent_bins],
                "clip_seconds": self.clip_seconds, "max_batch_default": DEFAULT_MAX_BATCH,
                "tokenizer": "synthetic ids" if self.text.synthetic else type(self.text.tokenizer).__name__}


class Tango2Adapter(TangoAdapter):
    """Tango 2 (declare-lab/tango2-full): Tango's architecture and sampler, DPO-fine-tuned UNet weights."""

    name = "tango2"
    defaults = entry("tango2").defaults
