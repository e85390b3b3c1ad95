"""Stable Audio Open 1.0 (``stable-audio-open``): the diffusers StableAudioPipeline components.

Components are the real diffusers/transformers classes, built from the bundled configs in
``configs/stable-audio-open-1.0/`` (reconstructed from diffusers' ``scripts/convert_stable_audio.py``
applied to the model's ``model_config.json``):

* ``text_encoder``: transformers ``T5EncoderModel`` (t5-base), prompts padded to 128 tokens;
* ``projection_model``: diffusers ``StableAudioProjectionModel`` (text projection + seconds conditioners);
* ``transformer``: diffusers ``StableAudioDiTModel`` (the denoiser);
* ``vae``: diffusers ``AutoencoderOobleck``; its decoder maps latents straight to the 44.1 kHz stereo
  waveform, so Stable Audio Open has no separate vocoder: the decoder is reported under the ``decoding``
  phase and there is no ``vocoder`` phase;
* ``scheduler``: diffusers ``CosineDPMSolverMultistepScheduler``.

``generate`` follows ``StableAudioPipeline.__call__`` step for step (the tests check equality on the same
components and seed). As in the pipeline, the DiT always runs on ``transformer.config.sample_size`` latent
frames (1024 = 47.55 s) whatever the requested duration; the duration only changes the seconds conditioning
and the final crop. The latent length is one attribute (:attr:`StableAudioOpenAdapter.latent_length`) so
that an energy lever can compute only the requested length.

Tokens: with real weights the checkpoint's tokenizer (``tokenizer/`` folder) is used. Replicas (and
checkpoints without a tokenizer) feed synthetic T5 ids of the real padded length, 128, with an attention
mask covering an estimate of the prompt's token count (see
:func:`tta_energy.models.tango.estimate_t5_tokens`); the compute does not depend on the id values, only on
the length, which is fixed by the max-length padding.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from tta_energy.errors import first_line
from tta_energy.models.base import (
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
    default_device,
    load_config,
)
from tta_energy.models.tango import T5Text
from tta_energy.models.weights import looks_like_hub_id

if TYPE_CHECKING:
    from diffusers import SchedulerMixin, StableAudioPipeline
    from transformers import PreTrainedTokenizerBase, T5Config

CONFIG_DIR = "stable-audio-open-1.0"

#: Tiny variant: the same classes and block structure with small widths. The DiT runs on 32 latent frames
#: (32 x 2048 / 44100 = 1.49 s), so 1 s of audio is a crop of it, as 10 s is a crop of 47.55 s at full size.
TINY_TEXT_ENCODER = {
    "vocab_size": 32128,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 4,
    "feed_forward_proj": "relu",
    "relative_attention_num_buckets": 32,
    "tokenizer_model_max_length": 128,
}
TINY_PROJECTION = {"text_encoder_dim": 32, "conditioning_dim": 32, "min_value": 0, "max_value": 512}
TINY_TRANSFORMER = {
    "sample_size": 32,
    "in_channels": 8,
    "num_layers": 2,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "num_key_value_attention_heads": 2,
    "out_channels": 8,
    "cross_attention_dim": 32,
    "time_proj_dim": 16,
    "global_states_input_dim": 64,
    "cross_attention_input_dim": 32,
}
TINY_VAE = {
    "encoder_hidden_size": 4,
    "downsampling_ratios": [2, 4, 4, 8, 8],
    "decoder_channels": 4,
    "decoder_input_channels": 8,
    "audio_channels": 2,
    "channel_multiples": [1, 2, 4, 8, 16],
    "sampling_rate": entry("stable-audio-open").defaults.sample_rate,
}

#: Folders of a diffusers StableAudioPipeline checkpoint (``save_pretrained`` / the hub repo).
#: Files of the diffusers layout inside the hub repo (which also holds the original single-file checkpoint).
HUB_PATTERNS = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.model", "*/*.txt"]
PIPELINE_LAYOUT = ["model_index.json", "transformer", "vae", "text_encoder", "projection_model", "scheduler"]


WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
)


def saved_keys(folder: Path) -> set[str]:
    """State-dict keys stored in a diffusers/transformers component folder (safetensors headers only)."""
    from safetensors import safe_open

    for name in WEIGHT_FILES:
        index = folder / f"{name}.index.json"
        if index.is_file():
            return set(json.loads(index.read_text())["weight_map"])
        file = folder / name
        if file.is_file():
            if name.endswith(".safetensors"):
                with safe_open(str(file), framework="pt") as f:
                    return set(f.keys())
            return set(torch.load(file, map_location="meta", weights_only=True))
    raise ModelError(f"weights path {folder.parent} has the wrong layout: no weights file in {folder.name}/")


def expected_keys(module: torch.nn.Module) -> list[set[str]]:
    """State-dict keys grouped per tensor: a tied tensor is saved once, under any of its names."""
    groups: dict[int, set[str]] = {}
    for key, tensor in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), set()).add(key)
    return list(groups.values())


def check_pipeline_keys(folder: Path) -> None:
    """Compare each component's saved keys with the module its config builds (on meta): diffusers would
    otherwise leave missing tensors uninitialised. One error line lists the missing and unexpected keys."""
    from diffusers import AutoencoderOobleck, StableAudioDiTModel, StableAudioProjectionModel
    from transformers import T5Config, T5EncoderModel

    builders = {
        "transformer": lambda d: StableAudioDiTModel.from_config(StableAudioDiTModel.load_config(d)),
        "vae": lambda d: AutoencoderOobleck.from_config(AutoencoderOobleck.load_config(d)),
        "projection_model": lambda d: StableAudioProjectionModel.from_config(
            StableAudioProjectionModel.load_config(d)
        ),
        "text_encoder": lambda d: T5EncoderModel(T5Config.from_pretrained(d)),
    }
    for name, builder in builders.items():
        sub = folder / name
        try:
            with default_device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = builder(str(sub))
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(
                f"cannot read the {name} config in {folder}: {str(exc).splitlines()[0]}"
            ) from None
        stored = saved_keys(sub)
        groups = expected_keys(module)
        missing = sorted(min(g) for g in groups if not g & stored)
        unexpected = sorted(stored - set().union(*groups))
        if missing or unexpected:

            def show(keys: list[str]) -> str:
                return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

            parts = ([f"{len(missing)} missing keys: {show(missing)}"] if missing else []) + (
                [f"{len(unexpected)} unexpected keys: {show(unexpected)}"] if unexpected else []
            )
            raise ModelError(f"checkpoint {sub} does not match its config: " + "; ".join(parts))


def _t5_config(cfg: dict) -> T5Config:
    from transformers import T5Config

    kwargs = {k: v for k, v in cfg.items() if k != "tokenizer_model_max_length"}
    return T5Config(**kwargs, is_encoder_decoder=False, use_cache=False)


class StableAudioOpenAdapter(ModelAdapter):
    """Stable Audio Open 1.0 behind the common adapter interface (see the module docstring)."""

    name = "stable-audio-open"
    defaults: ClassVar[ModelDefaults] = entry("stable-audio-open").defaults
    denoiser_name = "transformer"
    repeated_blocks = ("StableAudioDiTBlock",)

    def __init__(
        self,
        *,
        size: str,
        weights: str,
        device: torch.device,
        dtype: torch.dtype,
        text_encoder: torch.nn.Module,
        projection_model: torch.nn.Module,
        transformer: torch.nn.Module,
        vae: torch.nn.Module,
        scheduler: SchedulerMixin,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_text_tokens: int = 128,
    ) -> None:
        super().__init__(size=size, weights=weights, device=device, dtype=dtype)
        self.text_encoder = text_encoder
        self.projection_model = projection_model
        self._denoiser = transformer
        self.vae = vae
        self.scheduler = scheduler
        self.text = T5Text(tokenizer, max_length=max_text_tokens, vocab_size=text_encoder.config.vocab_size)
        #: latent frames the DiT runs on. The pipeline always uses transformer.config.sample_size (1024 =
        #: 47.55 s) whatever the duration; a lever may set it to the requested length instead.
        self.latent_length: int = int(transformer.config.sample_size)

    # -- construction: the template is ModelAdapter.build ------------------------------------------
    @classmethod
    def _build_random(cls, size: str, device: torch.device, dtype: torch.dtype) -> StableAudioOpenAdapter:
        from diffusers import (
            AutoencoderOobleck,
            CosineDPMSolverMultistepScheduler,
            StableAudioDiTModel,
            StableAudioProjectionModel,
        )
        from transformers import T5EncoderModel

        if size == "full":
            text_cfg = load_config(CONFIG_DIR, "text_encoder_config.reconstructed.json")
            proj_cfg = load_config(CONFIG_DIR, "projection_model_config.reconstructed.json")
            dit_cfg = load_config(CONFIG_DIR, "transformer_config.reconstructed.json")
            vae_cfg = load_config(CONFIG_DIR, "vae_config.reconstructed.json")
        else:
            text_cfg, proj_cfg, dit_cfg, vae_cfg = (
                TINY_TEXT_ENCODER,
                TINY_PROJECTION,
                TINY_TRANSFORMER,
                TINY_VAE,
            )
        sched_cfg = load_config(CONFIG_DIR, "scheduler_config.reconstructed.json")
        with default_device(device), warnings.catch_warnings():
            # diffusers builds the Oobleck convolutions with the deprecated torch weight_norm: a notice only
            warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
            text_encoder = T5EncoderModel(_t5_config(text_cfg))
            projection_model = StableAudioProjectionModel(**proj_cfg)
            transformer = StableAudioDiTModel(**dit_cfg)
            vae = AutoencoderOobleck(**vae_cfg)
        for m in (text_encoder, projection_model, transformer, vae):
            cast_module(m, device, dtype)
        scheduler = CosineDPMSolverMultistepScheduler(**sched_cfg)
        return cls(
            size=size,
            weights="random",
            device=device,
            dtype=dtype,
            text_encoder=text_encoder,
            projection_model=projection_model,
            transformer=transformer,
            vae=vae,
            scheduler=scheduler,
            max_text_tokens=int(text_cfg["tokenizer_model_max_length"]),
        )

    @classmethod
    def _load_weights(
        cls, weights: str, size: str, device: torch.device, dtype: torch.dtype
    ) -> StableAudioOpenAdapter:
        from diffusers import StableAudioPipeline

        path = Path(weights)
        if path.exists():
            missing = [r for r in PIPELINE_LAYOUT if not (path / r).exists()]
            if missing:
                raise ModelError(
                    f"weights path {path} has the wrong layout for stable-audio-open (a diffusers "
                    f"StableAudioPipeline folder): missing {', '.join(missing)}"
                )
        elif not looks_like_hub_id(weights):
            raise ModelError(f"weights path {weights} does not exist")
        else:
            path = cached_hub_repo(weights, HUB_PATTERNS)
        check_pipeline_keys(path)
        weights_dir = str(path)
        # a replica's checkpoint has no tokenizer (model_index lists it as null): pass None explicitly
        overrides = {} if (path / "tokenizer").is_dir() else {"tokenizer": None}
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
                pipe = StableAudioPipeline.from_pretrained(weights_dir, torch_dtype=dtype, **overrides)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelError(
                f"could not load stable-audio-open weights from {weights}: {first_line(exc)}"
            ) from None
        pipe.to(device)
        for m in (pipe.text_encoder, pipe.projection_model, pipe.transformer, pipe.vae):
            m.eval().requires_grad_(False)
        max_tokens = getattr(pipe.tokenizer, "model_max_length", 128) if pipe.tokenizer is not None else 128
        return cls(
            size=size,
            weights=str(weights),
            device=device,
            dtype=dtype,
            text_encoder=pipe.text_encoder,
            projection_model=pipe.projection_model,
            transformer=pipe.transformer,
            vae=pipe.vae,
            scheduler=pipe.scheduler,
            tokenizer=pipe.tokenizer,
            max_text_tokens=int(max_tokens),
        )

    def pipeline(self) -> StableAudioPipeline:
        """The diffusers ``StableAudioPipeline`` over this adapter's components (shares the modules)."""
        from diffusers import StableAudioPipeline

        return StableAudioPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            projection_model=self.projection_model,
            tokenizer=self.text.tokenizer,
            transformer=self.denoiser,
            scheduler=self.scheduler,
        )

    def save_pretrained(self, path: str | Path) -> None:
        """A diffusers ``StableAudioPipeline`` folder (the hub checkpoint's diffusers layout)."""
        self.pipeline().save_pretrained(str(path))

    def components(self) -> dict[str, torch.nn.Module]:
        return {
            "text_encoder": self.text_encoder,
            "projection_model": self.projection_model,
            "transformer": self.denoiser,
            "vae": self.vae,
        }

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def hop_length(self) -> int:
        return int(self.vae.hop_length)

    @property
    def sample_rate(self) -> int:
        return int(self.vae.config.sampling_rate)

    @property
    def max_duration_s(self) -> float:
        """The longest audio the DiT's latent window holds (47.55 s at full size), as in the pipeline."""
        return self.latent_length * self.hop_length / self.sample_rate

    def latent_seconds(self, duration_s: float) -> float:
        """The DiT always computes its whole latent window (47.55 s at full size), whatever the duration."""
        return float(self.max_duration_s)

    # -- generation -----------------------------------------------------------------------------
    def _encode_text(self, prompts: list[str], negative: str | None, cfg: bool) -> tuple[torch.Tensor, ...]:
        """T5 + projection as ``StableAudioPipeline.encode_prompt``; returns (embeds, mask) for [neg, pos]."""
        ids, mask = self.text.tokenize(prompts, padding="max_length", device=self.device)
        embeds = self.text_encoder(ids, attention_mask=mask)[0]
        if cfg and negative is not None:
            neg_ids, neg_mask = self.text.tokenize(
                [negative] * len(prompts), padding="max_length", device=self.device
            )
            neg_embeds = self.text_encoder(neg_ids, attention_mask=neg_mask)[0]
            # the pipeline sets the negative prompt's padded positions to the null embedding
            neg_embeds = torch.where(neg_mask.to(torch.bool).unsqueeze(2), neg_embeds, 0.0)
            embeds = torch.cat([neg_embeds, embeds])
            mask = torch.cat([neg_mask, mask])
        embeds = self.projection_model(text_hidden_states=embeds).text_hidden_states
        embeds = embeds * mask.unsqueeze(-1).to(embeds.dtype)
        return embeds, mask

    def _conditioning(
        self, prompts: list[str], negative: str | None, cfg: bool, duration_s: float, per_prompt: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-attention tokens, global states) for the whole CFG batch, as the pipeline builds them."""
        embeds, _ = self._encode_text(prompts, negative, cfg)
        with_negative = cfg and negative is not None
        n = len(prompts)
        seconds = self.projection_model(
            start_seconds=torch.zeros(n, device=self.device),
            end_seconds=torch.full((n,), float(duration_s), device=self.device),
        )
        start, end = seconds.seconds_start_hidden_states, seconds.seconds_end_hidden_states
        if with_negative:
            start, end = torch.cat([start, start]), torch.cat([end, end])
        cross = torch.cat([embeds, start, end], dim=1)
        global_states = torch.cat([start, end], dim=2)
        if cfg and not with_negative:
            # without a negative prompt the unconditional text+seconds tokens are zeros (pipeline behaviour)
            cross = torch.cat([torch.zeros_like(cross), cross])
            global_states = torch.cat([global_states, global_states])
        rows, seq, width = cross.shape
        cross = cross.repeat(1, per_prompt, 1).view(rows * per_prompt, seq, width)
        global_states = global_states.repeat(1, per_prompt, 1).view(
            rows * per_prompt, -1, global_states.shape[-1]
        )
        return cross, global_states

    def rotary_embedding(self, latent_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotary table the pipeline computes once per call (latent frames + 1 prepended global token)."""
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        cos, sin = get_1d_rotary_pos_embed(
            self.denoiser.config.attention_head_dim // 2,
            latent_length + 1,
            use_real=True,
            repeat_interleave_real=False,
        )
        return cos.to(self.device), sin.to(self.device)

    def generate(self, request: GenerationRequest, phases: PhaseHook = no_phases) -> GenerationOutput:
        from diffusers.utils.torch_utils import randn_tensor

        self.check_request(request)
        req = self.resolved(request)
        self.check_not_meta()
        cfg = self.defaults.runs_guidance(req.guidance_scale)
        negative = req.negative_prompt or None  # "" means no negative prompt: zero unconditional embeddings
        n_clips = req.n_clips
        start, end = 0, int(req.duration_s * self.sample_rate)
        if end > self.latent_length * self.hop_length:
            raise ModelError(
                f"duration {req.duration_s} s does not fit the {self.latent_length} latent frames"
            )
        generator = self.generator(req.seed)
        calls = 0
        with torch.inference_mode():
            with phases("text_encoding"):
                cross, global_states = self._conditioning(
                    req.prompts, negative, cfg, req.duration_s, req.waveforms_per_prompt
                )
            with phases("denoising"), warnings.catch_warnings():
                # torchsde's Brownian tree (the scheduler's noise) warns on every call that the float32 ends
                # of the sigma range miss its interval by one ulp: harmless, and the same in the pipeline
                warnings.filterwarnings("ignore", message="Should have t", module="torchsde")
                self.scheduler.set_timesteps(req.steps, device=self.device)
                latents = randn_tensor(
                    (n_clips, self.denoiser.config.in_channels, self.latent_length),
                    generator=generator,
                    device=self.device,
                    dtype=cross.dtype,
                )
                latents = latents * self.scheduler.init_noise_sigma
                rotary = self.rotary_embedding(self.latent_length)
                for t in self.scheduler.timesteps:
                    model_input = torch.cat([latents] * 2) if cfg else latents
                    model_input = self.scheduler.scale_model_input(model_input, t)
                    pred = self.denoiser(
                        model_input,
                        t.unsqueeze(0),
                        encoder_hidden_states=cross,
                        global_hidden_states=global_states,
                        rotary_embedding=rotary,
                        return_dict=False,
                    )[0]
                    calls += 1
                    if cfg:
                        uncond, cond = pred.chunk(2)
                        pred = uncond + req.guidance_scale * (cond - uncond)
                    latents = self.scheduler.step(pred, t, latents, generator=generator).prev_sample
            with phases("decoding"):
                audio = self.vae.decode(latents).sample[:, :, start:end]
                waveforms = audio.float().cpu().numpy().astype(np.float32)
        return GenerationOutput(
            waveforms=waveforms, sample_rate=self.sample_rate, denoiser_calls=calls, latents=latents
        )

    # -- describe -------------------------------------------------------------------------------
    def _example_conditioning(self, batch: int, cfg_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        proj = self.projection_model.config
        cond_dim = proj.conditioning_dim
        n_tokens = self.text.max_length + 2  # 128 T5 tokens + seconds_start + seconds_total
        cross = torch.zeros(cfg_rows * batch, n_tokens, cond_dim, device=self.device, dtype=self.dtype)
        global_states = torch.zeros(cfg_rows * batch, 1, 2 * cond_dim, device=self.device, dtype=self.dtype)
        return cross, global_states

    def denoiser_call(self, duration_s: float = 10.0, batch: int = 1) -> ModuleCall:
        """One DiT step with CFG: input ``(2B, 64, latent_length)`` (1024 frames whatever the duration)."""
        cross, global_states = self._example_conditioning(batch, 2)
        latents = torch.zeros(
            2 * batch,
            self.denoiser.config.in_channels,
            self.latent_length,
            device=self.device,
            dtype=self.dtype,
        )
        timestep = torch.ones(1, device=self.device, dtype=self.dtype)
        return ModuleCall(
            self.denoiser_name,
            self.denoiser,
            (latents, timestep),
            {
                "encoder_hidden_states": cross,
                "global_hidden_states": global_states,
                "rotary_embedding": self.rotary_embedding(self.latent_length),
                "return_dict": False,
            },
        )

    def per_generation_calls(self, duration_s: float = 10.0, batch: int = 1) -> list[ModuleCall]:
        """T5 on the prompt and on the negative prompt (B x 128 tokens each), the seconds conditioners and
        the Oobleck decoder on all ``latent_length`` frames (the crop to the duration comes after it)."""
        ids = torch.zeros(batch, self.text.max_length, dtype=torch.long, device=self.device)
        mask = torch.ones(batch, self.text.max_length, dtype=torch.long, device=self.device)
        seconds = torch.zeros(batch, device=self.device)
        latents = torch.zeros(
            batch,
            self.vae.config.decoder_input_channels,
            self.latent_length,
            device=self.device,
            dtype=self.dtype,
        )
        return [
            ModuleCall("text_encoder", self.text_encoder, (ids,), {"attention_mask": mask}),
            ModuleCall("text_encoder (negative prompt)", self.text_encoder, (ids,), {"attention_mask": mask}),
            ModuleCall(
                "projection_model",
                self.projection_model,
                (),
                {"start_seconds": seconds, "end_seconds": seconds + duration_s},
            ),
            ModuleCall("vae", self.vae, (latents,), method="decode"),
        ]

    def describe_extra(self) -> dict[str, object]:
        return {"latent_frames": self.latent_length, "latent_seconds": round(self.max_duration_s, 3),
                "t5_tokens": self.text.max_length,
                "tokenizer": "synthetic ids" if self.text.synthetic else type(self.text.tokenizer).__name__,
                "vocoder": "none: the Oobleck decoder outputs the waveform (counted under 'vae'/decoding)"}

    def latent_frames_for(self, duration_s: float) -> int:
        """Latent frames covering ``duration_s`` (for a lever that computes only the requested length)."""
        return math.ceil(duration_s * self.sample_rate / self.hop_length)
