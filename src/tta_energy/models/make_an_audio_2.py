"""Make-An-Audio 2 (``make-an-audio-2``): bytedance/Make-An-Audio-2's ``maa2.ckpt``, rebuilt in this project.

Components (config ``text2audio-ConcatDiT-ae1dnat_Skl20d2_struct2MLPanylen.yaml``):

* ``text_encoder``: the MS-CLAP text branch on the natural caption, as Make-An-Audio (BERT + per-token CLAP
  projection, 77 tokens) -> (B, 77, 1024);
* ``t5_encoder``: transformers ``T5EncoderModel`` with google/t5-v1_1-large shapes (24 layers, 1024 wide,
  gated-GELU FFN 2816, untied vocabulary; the encoder is shape-identical to flan-t5-large) on the structured
  caption, 77 tokens max-length padded, no attention mask (as the original) -> (B, 77, 1024);
* ``transformer``: the ``ConcatDiT2MLP`` denoiser (:mod:`.blocks.concat_dit`): H 576, 8 heads, depth 4, the
  context (B, 154, 1024) concatenated to the sequence: 1 + 154 + T tokens (471 for 10 s);
* ``vae``: the 1D convolutional KL autoencoder (:mod:`.blocks.vae1d`): 20 latent channels, half the mel rate;
* ``vocoder``: BigVGAN v1. The original loads ``useful_ckpts/bigvgan`` whose ``args.yml`` is not published
  with the code; we assume Make-An-Audio's 16 kHz / 80-mel / hop-256 ``bigvgan_args.yaml``;
* sampler: LDM DDIM (eta 0, uniform spacing; "150 steps" = 167 calls), scale 3, unconditional
  ``{"ori_caption": "", "struct_caption": ""}``.

Generation (``scripts/gen_wav.py``): start code ``(n, 20, W)`` with ``W = int(duration * 31.5)`` rounded up to
even (316 for 10 s) -> DDIM -> ``z / scale_factor`` -> 1D VAE -> mel ``(n, 80, 2W)`` -> BigVGAN per clip ->
``2W * 256`` samples at 16 kHz, cropped to the duration.

Measured at full size (``tta-energy describe``, meta device, 10 s, CFG batch 2): 937.3M parameters (CLAP text
111.3M, T5 341.2M, DiT 159.6M, 1D VAE 213.0M, BigVGAN 112.2M), DiT input (2, 20, 316) with (2, 154, 1024)
context = 471 tokens x 576 inside, 303.9 GFLOP per step; once per generation 2 x 13.6 (CLAP), 2 x 48.1 (T5),
66.7 (VAE decode) and 1158.6 (BigVGAN on 632 mel frames) GFLOP. All within 1% of a hand count from the
published configs.

Structured caption: ``request.extra["struct_caption"]`` (a string for every prompt, or one per prompt).
Without it, the study's rules apply (its scripts, arXiv 2505.07615): its hand-written caption for the study
prompt, else ``<caption.lower() & all>`` (the quality experiment's form). No language-model service is ever
called.

Maximum duration: the learned positional table has 1000 rows and the sequence is 1 + 154 + T long, so
T <= 845 latent frames: 26.8 s (``int(26.8 * 31.5) = 844``).

Text tokens, checkpoint layout and save format: as :mod:`.make_an_audio` (``maa2.ckpt``, the yaml above,
``bigvgan/``), with T5 sizes other than t5-v1_1-large in ``t5_config.json`` and an optional real T5 tokenizer
in ``t5-v1_1-large/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from tta_energy.fileio import write_json_atomic
from tta_energy.models.base import GenerationRequest, ModelDefaults, ModelError, ModuleCall
from tta_energy.models.blocks.bigvgan import BigVGANConfig
from tta_energy.models.blocks.concat_dit import ConcatDiT2MLP, ConcatDiTConfig
from tta_energy.models.blocks.vae1d import AutoencoderKL1D, VAE1DConfig
from tta_energy.models.catalogue import entry
from tta_energy.models.ckpt_maps import KeyTable, make_an_audio_2_table
from tta_energy.models.common import default_device, load_config
from tta_energy.models.make_an_audio import (
    BERT_TOKENIZER_DIR,
    TEXT_TOKENS,
    LatentAudioAdapter,
    build_clap,
    folder_tokenizer,
    read_bert_and_clap,
    read_json,
    read_vocoder_config,
    read_yaml,
    synthetic_text_ids,
)
from tta_energy.study import STUDY_PROMPT, STUDY_STRUCT_CAPTION

CONFIG_DIR = "make-an-audio-2"
T5_CONFIG_FILE, T5_TOKENIZER_DIR = "t5_config.json", "t5-v1_1-large"
T5_EOS, T5_PAD = 1, 0
T5_SHARED_EMBEDDING = "cond_stage_model.t5_transformer.shared.weight"
T5_TIED_EMBEDDING = "cond_stage_model.t5_transformer.encoder.embed_tokens.weight"
#: the study's prompt and the structured caption it passed for it (steps and batch experiments)
#: context tokens the DiT sees besides the latents: 77 CLAP + 77 T5
CONTEXT_TOKENS = 2 * TEXT_TOKENS
TINY_DIT = {"hidden_size": 64, "num_heads": 4, "depth": 2}
TINY_VAE = {"ch": 32}
TINY_T5 = {"vocab_size": 1000, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4}


def t5_v1_1_large() -> dict[str, Any]:
    """google/t5-v1_1-large encoder settings: the flan-t5-large shapes bundled for AudioLDM 2, untied."""
    config = load_config("audioldm2", "text_encoder_2_config.reconstructed.json")
    config.pop("tokenizer_model_max_length", None)
    config["tie_word_embeddings"] = False
    return config


def build_t5(config: dict[str, Any]) -> torch.nn.Module:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(**config, is_encoder_decoder=False, use_cache=False))


def latent_width(duration_s: float) -> int:
    """``scripts/gen_wav.dur_to_size``: ``int(duration * 31.5)`` rounded up to even."""
    width = int(duration_s * 31.5)
    return width if width % 2 == 0 else (width // 2 + 1) * 2


def struct_captions(prompts: list[str], extra: dict[str, object]) -> list[str]:
    """One structured caption per prompt: ``extra["struct_caption"]`` or the study's rule."""
    given = extra.get("struct_caption")
    if given is None:
        return [STUDY_STRUCT_CAPTION if p == STUDY_PROMPT else f"<{p.lower()} & all>" for p in prompts]
    if isinstance(given, str):
        return [given] * len(prompts)
    if (
        isinstance(given, (list, tuple))
        and len(given) == len(prompts)
        and all(isinstance(g, str) for g in given)
    ):
        return list(given)
    raise ModelError(
        f"struct_caption must be a string or one string per prompt ({len(prompts)}), got {given!r}"
    )


@dataclass
class MakeAnAudio2Config:
    ldm: dict[str, Any]
    dit: ConcatDiTConfig
    vae: VAE1DConfig
    bert: dict[str, Any]
    clap: dict[str, Any]
    t5: dict[str, Any]
    vocoder: BigVGANConfig


def _parse_ldm(ldm: dict[str, Any], source: str) -> tuple[ConcatDiTConfig, VAE1DConfig]:
    try:
        params = ldm["model"]["params"]
        dit = ConcatDiTConfig.from_params(params["unet_config"]["params"])
        first_stage = params["first_stage_config"]["params"]
        vae = VAE1DConfig.from_yaml(first_stage["embed_dim"], first_stage["ddconfig"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{source} is not a Make-An-Audio 2 config: no {exc} entry") from None
    except ValueError as exc:
        raise ModelError(f"{source}: {exc}") from None
    return dit, vae


def bundled_config(size: str) -> MakeAnAudio2Config:
    ldm = load_config(CONFIG_DIR, "text2audio-ConcatDiT-ae1dnat_Skl20d2_struct2MLPanylen.yaml")
    bert, clap = read_bert_and_clap(None, size)
    t5 = t5_v1_1_large()
    vocoder = load_config("make-an-audio", "bigvgan_args.yaml")  # assumed equal (see the module docstring)
    params = ldm["model"]["params"]
    if size == "tiny":
        params["unet_config"]["params"].update(TINY_DIT, context_dim=int(clap["d_proj"]))
        params["first_stage_config"]["params"]["ddconfig"].update(TINY_VAE)
        t5.update(TINY_T5)
        t5["d_model"] = int(clap["d_proj"])
        vocoder["upsample_initial_channel"] = 64
    dit, vae = _parse_ldm(ldm, "bundled config")
    return MakeAnAudio2Config(ldm, dit, vae, bert, clap, t5, BigVGANConfig.from_args(vocoder))


def config_from_folder(folder: Path, config_file: str) -> MakeAnAudio2Config:
    ldm = read_yaml(folder / config_file)
    dit, vae = _parse_ldm(ldm, str(folder / config_file))
    bert, clap = read_bert_and_clap(folder, "full")
    t5 = read_json(folder / T5_CONFIG_FILE) if (folder / T5_CONFIG_FILE).is_file() else t5_v1_1_large()
    return MakeAnAudio2Config(ldm, dit, vae, bert, clap, t5, read_vocoder_config(folder))


def _check_widths(config: MakeAnAudio2Config) -> None:
    widths = {
        "CLAP d_proj": int(config.clap["d_proj"]),
        "T5 d_model": int(config.t5["d_model"]),
        "DiT context_dim": config.dit.context_dim,
    }
    if len(set(widths.values())) != 1:
        raise ModelError(
            "Make-An-Audio 2 needs equal text widths: " + ", ".join(f"{k} {v}" for k, v in widths.items())
        )


class MakeAnAudio2Adapter(LatentAudioAdapter):
    """Make-An-Audio 2 (maa2.ckpt) behind the common adapter interface."""

    name = "make-an-audio-2"
    defaults: ClassVar[ModelDefaults] = entry("make-an-audio-2").defaults
    denoiser_name = "transformer"
    repeated_blocks = ("ConcatDiTBlock",)
    checkpoint_file = "maa2.ckpt"
    config_file = "text2audio-ConcatDiT-ae1dnat_Skl20d2_struct2MLPanylen.yaml"

    def __init__(self, *, config: MakeAnAudio2Config, t5_tokenizer: Any | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.t5_tokenizer = t5_tokenizer

    @property
    def t5_encoder(self) -> torch.nn.Module:
        return self.modules["t5_encoder"]

    @property
    def transformer(self) -> ConcatDiT2MLP:
        return self.modules["transformer"]

    @property
    def vae(self) -> AutoencoderKL1D:
        return self.modules["vae"]

    # -- construction: the template is LatentAudioAdapter.build ----------------------------------------------
    @staticmethod
    def _bundled_config(size: str) -> MakeAnAudio2Config:
        config = bundled_config(size)
        _check_widths(config)
        return config

    @classmethod
    def _folder_config(cls, folder: Path) -> MakeAnAudio2Config:
        config = config_from_folder(folder, cls.config_file)
        _check_widths(config)
        return config

    @staticmethod
    def _key_table(config: MakeAnAudio2Config) -> KeyTable:
        return table_for(config)

    @staticmethod
    def _prepare_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # T5's input embedding is tied to ``shared``; some saves keep only the latter
        state_dict.setdefault(T5_TIED_EMBEDDING, state_dict.get(T5_SHARED_EMBEDDING))
        if state_dict[T5_TIED_EMBEDDING] is None:
            del state_dict[T5_TIED_EMBEDDING]
        return state_dict

    @staticmethod
    def _tokenizers(folder: Path) -> dict[str, Any]:
        return {"bert_tokenizer": folder_tokenizer(folder, BERT_TOKENIZER_DIR),
                "t5_tokenizer": folder_tokenizer(folder, T5_TOKENIZER_DIR)}

    @staticmethod
    def _modules(config: MakeAnAudio2Config, device: torch.device) -> torch.nn.ModuleDict:
        with default_device(device):
            return torch.nn.ModuleDict(
                {
                    "text_encoder": build_clap(config.bert, config.clap),
                    "t5_encoder": build_t5(config.t5),
                    "transformer": ConcatDiT2MLP(config.dit),
                    "vae": AutoencoderKL1D(config.vae),
                }
            )

    def table(self) -> KeyTable:
        return table_for(self.config)

    def save_pretrained(self, path: str | Path) -> None:
        """The original layout: ``maa2.ckpt``, the inference yaml, ``bigvgan/`` (+ BERT/CLAP/T5 sizes)."""
        folder = Path(path)
        self.save_common(folder)
        write_json_atomic(folder / T5_CONFIG_FILE, self.config.t5)

    def components(self) -> dict[str, torch.nn.Module]:
        return {
            "text_encoder": self.text_encoder,
            "t5_encoder": self.t5_encoder,
            "transformer": self.transformer,
            "vae": self.vae,
            "vocoder": self.vocoder,
        }

    # -- generation -----------------------------------------------------------------------------------------
    def check_request(self, request: GenerationRequest) -> None:
        super().check_request(request)
        struct_captions(request.prompts, request.extra)
        duration = self.resolved(request).duration_s
        frames = latent_width(duration)
        if frames > self.transformer.max_latent_frames(CONTEXT_TOKENS):
            raise ModelError(
                f"duration {duration} s needs {frames} latent frames; the positional table allows "
                f"{self.transformer.max_latent_frames(CONTEXT_TOKENS)}"
            )

    def latent_shape(self, duration_s: float, n: int) -> tuple[int, ...]:
        return (n, self.config.vae.embed_dim, latent_width(duration_s))

    def t5_ids(self, texts: list[str]) -> torch.Tensor:
        if self.t5_tokenizer is not None:
            out = self.t5_tokenizer(
                texts, truncation=True, max_length=TEXT_TOKENS, padding="max_length", return_tensors="pt"
            )
            return out["input_ids"].to(self.device)
        ids = synthetic_text_ids(
            texts, TEXT_TOKENS, self.t5_encoder.config.vocab_size, bos=None, eos=T5_EOS, pad=T5_PAD
        )
        return ids.to(self.device)

    def encode_text(self, captions: list[str], extra: dict[str, object], unconditional: bool) -> torch.Tensor:
        """``FrozenCLAPFLANEmbedder.encode``: CLAP on the caption ‖ T5 on the structured caption (both 77)."""
        structs = [""] * len(captions) if unconditional else struct_captions(captions, extra)
        clap = self.text_encoder(self.clap_ids(captions))
        t5 = self.t5_encoder(input_ids=self.t5_ids(structs)).last_hidden_state  # no mask, as the original
        return torch.cat([clap, t5], dim=1)

    def run_denoiser(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.denoiser(x, t, context)

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z)

    # -- describe -------------------------------------------------------------------------------------------
    def denoiser_call(self, duration_s: float = 10.0, batch: int = 1) -> ModuleCall:
        """One DiT step with CFG: ``(2B, 20, 316)`` latents for 10 s and ``(2B, 154, 1024)`` context."""
        x = torch.zeros(self.latent_shape(duration_s, 2 * batch), device=self.device, dtype=self.dtype)
        context = torch.zeros(
            2 * batch, CONTEXT_TOKENS, self.config.dit.context_dim, device=self.device, dtype=self.dtype
        )
        t = torch.full((2 * batch,), 981, dtype=torch.long, device=self.device)
        return ModuleCall(self.denoiser_name, self.denoiser, (x, t, context))

    def per_generation_calls(self, duration_s: float = 10.0, batch: int = 1) -> list[ModuleCall]:
        """CLAP and T5 on the captions and on ``""`` (77 tokens each), the 1D VAE decoder, BigVGAN."""
        ids = torch.zeros(batch, TEXT_TOKENS, dtype=torch.long, device=self.device)
        z = torch.zeros(self.latent_shape(duration_s, batch), device=self.device, dtype=self.dtype)
        mel = torch.zeros(
            batch,
            self.vocoder.config.num_mels,
            z.shape[-1] * self.config.vae.time_downsampling,
            device=self.device,
            dtype=self.dtype,
        )
        return [
            ModuleCall("text_encoder", self.text_encoder, (ids,)),
            ModuleCall("text_encoder (unconditional)", self.text_encoder, (ids,)),
            ModuleCall("t5_encoder", self.t5_encoder, (), {"input_ids": ids}),
            ModuleCall("t5_encoder (unconditional)", self.t5_encoder, (), {"input_ids": ids}),
            ModuleCall("vae", self.vae, (z,), method="decode"),
            ModuleCall("vocoder", self.vocoder, (mel,)),
        ]


def table_for(config: MakeAnAudio2Config) -> KeyTable:
    return make_an_audio_2_table(config.dit.depth, config.vae.ddconfig())

