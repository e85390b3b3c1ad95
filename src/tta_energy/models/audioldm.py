"""AudioLDM (``cvssp/audioldm-s-full-v2`` / ``cvssp/audioldm``, the "S" size) behind the adapter interface.

Built from diffusers' ``AudioLDMPipeline`` components (``ClapTextModelWithProjection``,
``UNet2DConditionModel``, ``AutoencoderKL``, ``SpeechT5HifiGan``, ``DDIMScheduler``) with the bundled
configs (``models/configs/audioldm``, reconstructed from diffusers' conversion script). ``generate`` runs
the same computation as the study's
``pipe(prompt, negative_prompt="Low quality.", num_inference_steps=N, audio_length_in_s=10.0)`` call, split
into the four measured phases, and calls the UNet only through :attr:`denoiser`.

Tokenizers. A replica has no vocabulary files, so it feeds synthetic token ids of the real sequence
length (:func:`estimated_token_count` gives the number of real tokens, the rest is padding). The CLAP
RoBERTa tokenizer pads to ``model_max_length``; we use :data:`CLAP_TOKEN_LENGTH` = 512 (see there).
With real weights, the tokenizer saved in the weights folder is used, exactly as the pipeline does.
"""

from __future__ import annotations

import contextlib
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from tta_energy.errors import first_line
from tta_energy.models.base import (
    UNET_BLOCKS,
    GenerationOutput,
    GenerationRequest,
    ModelAdapter,
    ModelError,
    ModuleCall,
    PhaseHook,
    no_phases,
)
from tta_energy.models.catalogue import entry
from tta_energy.models.common import (
    cached_hub_repo,
    check_weights_dir,
    hub_offline,
    load_config,
    synthetic_token_ids,
)
from tta_energy.models.tiny import tiny_autoencoder_kl, tiny_bert_like, tiny_hifigan, tiny_unet2d
from tta_energy.models.weights import looks_like_hub_id

#: Length the CLAP (RoBERTa) tokenizer pads every prompt to (``padding="max_length"`` in the pipelines).
#: 512, not 77: the laion/clap-htsat-unfused tokenizer is RoBERTa-base's, whose ``model_max_length`` is 512,
#: and the original AudioLDM code tokenises its CLAP text input with ``max_length=512``; CLAP was *trained*
#: on 77 tokens (LAION-AI/CLAP #125), but the pipelines pad to the tokenizer's maximum. The Hub tokenizer
#: config was not available to check, so this is the upper of the two candidates: the
#: text encoder costs ~193 GFLOP (cond + uncond) at 512 instead of ~27 at 77, against ~2 TFLOP per step
#: times N steps for the UNet. Change it per adapter with ``adapter.clap_token_length = 77``.
CLAP_TOKEN_LENGTH = 512

#: RoBERTa special ids (bos <s>=0, pad=1, eos </s>=2), as in the CLAP tokenizer
ROBERTA_BOS, ROBERTA_PAD, ROBERTA_EOS = 0, 1, 2


_WORD_OR_MARK = re.compile(r"\w+|[^\w\s]")


def estimated_token_count(text: str) -> int:
    """Tokens a BPE/SentencePiece tokenizer makes of ``text``, without its vocabulary: one per word or
    punctuation mark (special tokens not included).

    The rule is deterministic and exact for short common words; for the study's prompt "Water running out
    of a faucet, some hitting a sink bottom, and some water filling a cup" it gives 17 words + 2 commas = 19
    (+ EOS = 20 for Flan-T5).
    """
    return len(_WORD_OR_MARK.findall(text))


def text_seed(text: str) -> int:
    """A stable seed per text so that different prompts get different synthetic ids."""
    return zlib.crc32(text.encode("utf-8"))


def clap_synthetic_ids(texts: list[str], vocab_size: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic CLAP/RoBERTa ids: <s> + one id per estimated token + </s>, padded to ``length``."""
    rows = [synthetic_token_ids(1, length, vocab_size, bos=ROBERTA_BOS, eos=ROBERTA_EOS, pad=ROBERTA_PAD,
                                content_tokens=estimated_token_count(t) + 2, seed=text_seed(t))
            for t in texts]
    return torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows])


@contextlib.contextmanager
def quiet_diffusers() -> Iterator[None]:
    """Silence diffusers' deprecation notice for AudioLDMPipeline (it is still the study's pipeline)."""
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        yield
    finally:
        dlogging.set_verbosity(level)


def load_pipeline(pipeline_cls: type, weights: str, required: list[str], dtype: torch.dtype,
                  device: torch.device) -> Any:
    """``pipeline_cls.from_pretrained`` from a local folder or a hub id, with one-line errors, on ``device``.

    A local folder must hold ``required`` entries and a ``model_index.json`` naming ``pipeline_cls``.
    ``HF_HUB_OFFLINE=1`` is honoured (no hub call; only the local cache is read).
    """
    path = Path(weights).expanduser()
    offline = hub_offline()
    if offline and not path.exists() and looks_like_hub_id(weights):
        path = cached_hub_repo(weights)  # the cached snapshot is read as a local folder
    if path.exists() or not looks_like_hub_id(weights):
        check_weights_dir(path, ["model_index.json", *required])
        try:
            index = json.loads((path / "model_index.json").read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"weights path {path} has an unreadable model_index.json: {exc}") from None
        found = index.get("_class_name")
        if found != pipeline_cls.__name__:
            raise ModelError(f"weights path {path} holds a {found} checkpoint, "
                             f"not a {pipeline_cls.__name__} one")
        source = str(path)
        # components saved as null (a replica's missing tokenizers) must be passed as None explicitly
        absent = {k: None for k, v in index.items()
                  if not k.startswith("_") and isinstance(v, list) and all(x is None for x in v)}
    else:
        source, absent = weights, {}
    try:
        with quiet_diffusers():
            pipe = pipeline_cls.from_pretrained(source, dtype=dtype, local_files_only=offline, **absent)
    except Exception as exc:  # diffusers/transformers/hub errors: keep the first line only
        raise ModelError(
            f"cannot load {pipeline_cls.__name__} weights from {weights}: {first_line(exc)}"
        ) from None
    if Path(source).exists():
        for name in required:
            module = getattr(pipe, name, None)
            if isinstance(module, torch.nn.Module):
                check_checkpoint_keys(Path(source) / name, module, name)
    with quiet_diffusers():
        return pipe.to(device)


def _checkpoint_keys(folder: Path) -> set[str] | None:
    """Tensor names stored in a component folder (safetensors, single or sharded); None when unknown."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    index = sorted(folder.glob("*.safetensors.index.json"))
    if index:
        return set(json.loads(index[0].read_text())["weight_map"])
    if not files:
        return None  # .bin checkpoints: not checked
    keys: set[str] = set()
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            keys.update(fh.keys())
    return keys


def check_checkpoint_keys(folder: Path, module: torch.nn.Module, name: str) -> None:
    """Fail when a checkpoint lacks parameters of the module (transformers would silently leave them random).

    Tied parameters count as present when any of their names is stored.
    """
    stored = _checkpoint_keys(folder)
    if stored is None:
        return
    aliases: dict[int, list[str]] = {}
    for pname, param in module.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(param), []).append(pname)
    missing = [names[0] for names in aliases.values() if not any(n in stored for n in names)]
    if missing:
        shown = ", ".join(missing[:3]) + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else "")
        raise ModelError(f"checkpoint {folder} does not match {name}: missing {shown}")


def latent_frames(duration_s: float, pipe: Any) -> tuple[int, int]:
    """(mel frames rounded up to the VAE factor, waveform samples), exactly as the pipelines compute them."""
    voc = pipe.vocoder.config
    upsample_factor = np.prod(voc.upsample_rates) / voc.sampling_rate
    height = int(duration_s / upsample_factor)
    samples = int(duration_s * voc.sampling_rate)
    if height % pipe.vae_scale_factor != 0:
        height = int(np.ceil(height / pipe.vae_scale_factor)) * pipe.vae_scale_factor
    return height, samples


def min_duration_s(pipe: Any) -> float:
    """The pipelines' own lower bound: one latent frame."""
    voc = pipe.vocoder.config
    return float(np.prod(voc.upsample_rates) / voc.sampling_rate * pipe.vae_scale_factor)


@dataclass
class UNetConditioning:
    """What the prompts give the denoising loop: the UNet's conditioning keyword arguments (each
    ``cat([negative, positive])`` under CFG) and the dtype of the initial latents (the pipelines'
    ``prompt_embeds.dtype``)."""

    unet_kwargs: dict[str, Any]
    latents_dtype: torch.dtype


def unet_call_kwargs(conditioning: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of one UNet call, as the pipelines make it: the conditioning, no output
    dataclass. The denoising loop and the example step (:meth:`denoiser_call`) both use it, so that a CUDA
    graph captured on the example replays in the loop (the same call signature)."""
    return {"return_dict": False, **conditioning}


class AudioLDMFamilyAdapter(ModelAdapter):
    """What AudioLDM and AudioLDM 2 share: loading, checks, and the generation pipeline (:meth:`generate`)
    with its denoising loop, decoding and vocoder; each model gives its text conditioning
    (:meth:`conditioning`) and, where it has one, a re-ranking of the waveforms (:meth:`rerank`)."""

    clap_token_length: int = CLAP_TOKEN_LENGTH
    repeated_blocks = UNET_BLOCKS
    #: the diffusers pipeline class (by name) that holds the components and reads the checkpoints
    pipeline_name: ClassVar[str]
    #: the pipeline's component folders a checkpoint must hold
    components_required: ClassVar[list[str]]

    def __init__(self, pipe: Any, *, size: str, weights: str, device: torch.device,
                 dtype: torch.dtype) -> None:
        super().__init__(size=size, weights=weights, device=device, dtype=dtype)
        self.pipe = pipe
        self._denoiser: Any = pipe.unet

    # -- construction: the subclasses give the configs, the modules and the pipeline's other parts ---------
    @classmethod
    def pipeline_class(cls) -> type:
        import diffusers

        return getattr(diffusers, cls.pipeline_name)

    @classmethod
    def configs(cls, size: str) -> dict[str, dict[str, Any]]:
        """The component configs of ``size`` (full: the bundled reconstructed configs)."""
        raise NotImplementedError

    @classmethod
    def random_modules(cls, cfg: dict[str, dict[str, Any]]) -> dict[str, torch.nn.Module]:
        """The pipeline's modules built from ``cfg``, keyed by component name, in a fixed creation order."""
        raise NotImplementedError

    @classmethod
    def pipeline_parts(cls, cfg: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The pipeline's other arguments for a replica: scheduler, no tokenizers, feature extractor."""
        raise NotImplementedError

    @classmethod
    def _build_random(cls, size: str, device: torch.device, dtype: torch.dtype) -> AudioLDMFamilyAdapter:
        cfg = cls.configs(size)
        with torch.device(device):
            modules = cls.random_modules(cfg)
        with quiet_diffusers():
            modules = {k: m.to(dtype).eval() for k, m in modules.items()}
            pipe = cls.pipeline_class()(**modules, **cls.pipeline_parts(cfg))
        return cls(pipe, size=size, weights="random", device=device, dtype=dtype)

    @classmethod
    def _load_weights(cls, weights: str, size: str, device: torch.device,
                      dtype: torch.dtype) -> AudioLDMFamilyAdapter:
        pipe = load_pipeline(cls.pipeline_class(), weights, cls.components_required, dtype, device)
        return cls(pipe, size=size, weights=weights, device=device, dtype=dtype)

    @property
    def has_tokenizers(self) -> bool:
        return self.pipe.tokenizer is not None

    def save_pretrained(self, path: str | Path) -> None:
        with quiet_diffusers():
            self.pipe.save_pretrained(str(path), safe_serialization=True)

    def check_request(self, request: GenerationRequest) -> None:
        super().check_request(request)
        low = min_duration_s(self.pipe)
        if request.duration_s is not None and request.duration_s < low - 1e-9:
            raise ModelError(f"duration {request.duration_s} s is below {self.name}'s minimum of {low} s")

    # -- generation: the pipelines' ``__call__``, split into the four measured phases ------------------
    def generate(self, request: GenerationRequest, phases: PhaseHook = no_phases) -> GenerationOutput:
        """The pipelines' ``__call__`` step by step, each phase wrapped in ``phases(name)``; the UNet is
        called only through :attr:`denoiser`."""
        # 1. check inputs
        self.check_request(request)
        # 2. define call parameters: the model's defaults where the request leaves None
        r = self.resolved(request)
        n = r.waveforms_per_prompt
        cfg = self.defaults.runs_guidance(r.guidance_scale)
        generator = self.generator(r.seed)
        height, samples = latent_frames(r.duration_s, self.pipe)
        with torch.inference_mode():
            # 3. encode the prompt (and the negative prompt under CFG)
            with phases("text_encoding"):
                conditioning = self.conditioning(r.prompts, r.negative_prompt, n, cfg)
            with phases("denoising"):
                # 4. prepare the latent variables
                latents = self.prepare_latents(len(r.prompts) * n, height, conditioning.latents_dtype,
                                               generator)
                # 5. denoising loop
                latents, calls = self.denoising_loop(latents, r.steps, r.guidance_scale,
                                                     conditioning.unet_kwargs, generator)
            # 6. decode the latents to a mel spectrogram
            with phases("decoding"):
                mel = self.decode(latents)
            # 7. mel spectrogram to waveform, and the model's re-ranking (part of the measured call)
            with phases("vocoder"):
                audio = self.rerank(r, self.vocode(mel, samples))
        # 8. waveforms as (clips, channels, samples) float32
        waveforms = audio.numpy().astype(np.float32)[:, None, :]
        return GenerationOutput(waveforms=waveforms, sample_rate=int(self.pipe.vocoder.config.sampling_rate),
                                denoiser_calls=calls, latents=latents)

    def conditioning(self, prompts: list[str], negative: str, n: int, cfg: bool) -> UNetConditioning:
        """The UNet's conditioning for ``prompts`` (``n`` waveforms each) and, when ``cfg``, ``negative``."""
        raise NotImplementedError

    def rerank(self, request: GenerationRequest, audio: torch.Tensor) -> torch.Tensor:
        """The waveforms the pipeline returns from the vocoder's ``audio`` (the resolved ``request``'s
        clips, in order): all of them, in order, unless the model re-ranks them."""
        return audio

    def denoising_loop(self, latents: torch.Tensor, steps: int, guidance_scale: float,
                       unet_kwargs: dict[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, int]:
        """The pipelines' loop: CFG as one batch of 2B (uncond first), DDIM steps, eta 0."""
        pipe = self.pipe
        cfg = self.defaults.runs_guidance(guidance_scale)
        pipe.scheduler.set_timesteps(steps, device=self.device)
        step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
        calls = 0
        for t in pipe.scheduler.timesteps:
            model_input = torch.cat([latents] * 2) if cfg else latents
            model_input = pipe.scheduler.scale_model_input(model_input, t)
            noise_pred = self.denoiser(model_input, t, **unet_call_kwargs(unet_kwargs))[0]
            calls += 1
            if cfg:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (cond - uncond)
            latents = pipe.scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
        return latents, calls

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE decode to a mel spectrogram, as ``decode_latents`` of the pipelines."""
        return self.pipe.vae.decode(latents / self.pipe.vae.config.scaling_factor).sample

    def vocode(self, mel: torch.Tensor, samples: int) -> torch.Tensor:
        """HiFi-GAN, moved to the CPU as float32 and cut to the asked duration (the pipelines do the same)."""
        return self.pipe.mel_spectrogram_to_waveform(mel)[:, :samples]

    def prepare_latents(self, n: int, height: int, dtype: torch.dtype,
                        generator: torch.Generator) -> torch.Tensor:
        return self.pipe.prepare_latents(n, self.pipe.unet.config.in_channels, height, dtype, self.device,
                                         generator)

    def latent_shape(self, duration_s: float, n: int) -> tuple[int, int, int, int]:
        height, _ = latent_frames(duration_s, self.pipe)
        mel_bins = int(self.pipe.vocoder.config.model_in_dim)
        f = self.pipe.vae_scale_factor
        return (n, int(self.pipe.unet.config.in_channels), height // f, mel_bins // f)

    def decoder_calls(self, duration_s: float, batch: int) -> list[ModuleCall]:
        """VAE decode and vocoder for ``batch`` clips (the once-per-generation calls after the loop)."""
        shape = self.latent_shape(duration_s, batch)
        latents = torch.zeros(shape, device=self.device, dtype=self.dtype)
        height, _ = latent_frames(duration_s, self.pipe)
        mel = torch.zeros((batch, height, int(self.pipe.vocoder.config.model_in_dim)), device=self.device,
                          dtype=self.dtype)
        return [ModuleCall("vae", self.pipe.vae, (latents,), method="decode"),
                ModuleCall("vocoder", self.pipe.vocoder, (mel,))]

    def describe_extra(self) -> dict[str, object]:
        return {"clap_token_length": self.clap_token_length, "weights": self.weights}


class AudioLDMAdapter(AudioLDMFamilyAdapter):
    """AudioLDM-S: CLAP text embedding as a FiLM class label of the UNet, no cross-attention context."""

    name = "audioldm"
    defaults = entry("audioldm").defaults
    config_dir: ClassVar[str] = "audioldm"
    pipeline_name = "AudioLDMPipeline"
    components_required: ClassVar[list[str]] = ["text_encoder", "unet", "vae", "vocoder", "scheduler"]

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def configs(cls, size: str) -> dict[str, dict[str, Any]]:
        d = cls.config_dir
        text = load_config(d, "text_encoder_config.reconstructed.json")
        unet = load_config(d, "unet_config.reconstructed.json")
        vae = {k: v for k, v in load_config(d, "vae_config.reconstructed.json").items() if v is not None}
        vocoder = load_config(d, "vocoder_config.reconstructed.json")
        scheduler = load_config(d, "scheduler_config.reconstructed.json")
        if size == "tiny":
            text = tiny_bert_like(text)
            unet = tiny_unet2d(unet, class_embed_input_dim=text["projection_dim"])
            vae = tiny_autoencoder_kl(vae)
            vocoder = tiny_hifigan(vocoder)
        return {"text_encoder": text, "unet": unet, "vae": vae, "vocoder": vocoder, "scheduler": scheduler}

    @classmethod
    def random_modules(cls, cfg: dict[str, dict[str, Any]]) -> dict[str, torch.nn.Module]:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import (
            ClapTextConfig,
            ClapTextModelWithProjection,
            SpeechT5HifiGan,
            SpeechT5HifiGanConfig,
        )

        return {"text_encoder": ClapTextModelWithProjection(ClapTextConfig(**cfg["text_encoder"])),
                "unet": UNet2DConditionModel.from_config(cfg["unet"]),
                "vae": AutoencoderKL.from_config(cfg["vae"]),
                "vocoder": SpeechT5HifiGan(SpeechT5HifiGanConfig(**cfg["vocoder"]))}

    @classmethod
    def pipeline_parts(cls, cfg: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from diffusers import DDIMScheduler

        return {"tokenizer": None, "scheduler": DDIMScheduler.from_config(cfg["scheduler"])}

    def components(self) -> dict[str, torch.nn.Module]:
        p = self.pipe
        return {"text_encoder": p.text_encoder, "unet": p.unet, "vae": p.vae, "vocoder": p.vocoder}

    # -- text -----------------------------------------------------------------------------------
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised CLAP text embeddings (B, 512) of synthetic ids of the real length (replicas)."""
        te = self.pipe.text_encoder
        ids, mask = clap_synthetic_ids(texts, te.config.vocab_size, self.clap_token_length)
        embeds = te(ids.to(self.device), attention_mask=mask.to(self.device)).text_embeds
        return F.normalize(embeds, dim=-1)

    def prompt_embeddings(self, prompts: list[str], negative: str, n: int, cfg: bool) -> torch.Tensor:
        """``cat([negative, positive])`` class labels (2B*n, 512) as ``_encode_prompt`` returns them."""
        pipe = self.pipe
        negatives = [negative] * len(prompts)
        if self.has_tokenizers:
            return pipe._encode_prompt(prompts, self.device, n, cfg, negatives)
        positive = self.encode_text(prompts)
        neg = self.encode_text(negatives) if cfg else None
        return pipe._encode_prompt(None, self.device, n, cfg, prompt_embeds=positive,
                                   negative_prompt_embeds=neg)

    def conditioning(self, prompts: list[str], negative: str, n: int, cfg: bool) -> UNetConditioning:
        """CLAP embeddings as the UNet's FiLM class labels, no cross-attention context."""
        class_labels = self.prompt_embeddings(prompts, negative, n, cfg)
        return UNetConditioning({"encoder_hidden_states": None, "class_labels": class_labels},
                                class_labels.dtype)

    # -- counting -------------------------------------------------------------------------------
    def denoiser_call(self, duration_s: float = 10.0, batch: int = 1) -> ModuleCall:
        shape = self.latent_shape(duration_s, 2 * batch)
        sample = torch.zeros(shape, device=self.device, dtype=self.dtype)
        t = torch.tensor(999, device=self.device)
        labels = torch.zeros((2 * batch, self.pipe.unet.config.projection_class_embeddings_input_dim),
                             device=self.device, dtype=self.dtype)
        return ModuleCall("unet", self.pipe.unet, (sample, t),
                          unet_call_kwargs({"encoder_hidden_states": None, "class_labels": labels}))

    def per_generation_calls(self, duration_s: float = 10.0, batch: int = 1) -> list[ModuleCall]:
        """CLAP text encoder on the prompt and the negative prompt (one prompt), VAE decode, vocoder."""
        te = self.pipe.text_encoder
        ids, mask = clap_synthetic_ids(["", ""], te.config.vocab_size, self.clap_token_length)
        text = ModuleCall("text_encoder", te, (ids.to(self.device),),
                          {"attention_mask": mask.to(self.device)})
        return [text, *self.decoder_calls(duration_s, batch)]
