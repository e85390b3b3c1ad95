"""Make-An-Audio (``make-an-audio``): Text-to-Audio/Make-An-Audio's ``maa1_full.ckpt``, rebuilt here.

The original is a research code base (latent-diffusion fork), not a package. This adapter rebuilds it on
diffusers/transformers classes where they are exact equivalents:

* ``text_encoder``: MS-CLAP text branch = transformers ``BertModel`` (bert-base-uncased) + CLAP's 3-layer
  projection applied to every token (:mod:`.blocks.msclap`), 77 tokens max-length padded -> (B, 77, 1024);
* ``unet``: diffusers ``UNet2DConditionModel`` from ``unet_config.diffusers_equivalent.json`` (layer for
  layer the LDM ``openaimodel.UNetModel`` of ``txt2audio_args.yaml``);
* ``vae``: diffusers ``AutoencoderKL`` from ``vae_config.diffusers_equivalent.json`` (the LDM autoencoder);
* ``vocoder``: BigVGAN v1 from ``bigvgan_args.yaml`` (:mod:`.blocks.bigvgan`);
* sampler: LDM DDIM, eta 0, uniform spacing (:mod:`.blocks.ddim`): "150 steps" make 167 denoiser calls.

Generation follows ``gen_wav.py``: start code ``(n, 4, 10, W)`` with ``W = int(duration * 7.8)`` rounded up
to a multiple of 4 (80 for 10 s), unconditional text ``""`` (scale 3), per step one UNet call on the CFG batch
``[uncond, cond]``, then ``z / scale_factor`` -> VAE decode -> mel ``(n, 1, 80, 8W)`` -> BigVGAN on each
clip -> ``8W * 256`` samples at 16 kHz, cropped to the requested duration (the original writes all
10.24 s).

Measured at full size (``tta-energy describe``, meta device, 10 s, CFG batch 2): 452.7M parameters (CLAP text
111.3M, UNet 160.2M, VAE 69.0M, BigVGAN 112.2M), UNet input (2, 4, 10, 80) with (2, 77, 1024) context,
191.6 GFLOP per step; once per generation 2 x 13.6 (text), 403.8 (VAE decode) and 1173.3 (BigVGAN) GFLOP. All
within 1% of a hand count from the published configs.

Text tokens: replicas have no vocabulary files, so the prompt becomes synthetic BERT ids (a [CLS] ... [SEP]
frame of one token per word, padded to 77, seeded by the text). The original passes no attention mask, so the
encoder's compute is the same for every prompt. A weights folder holding a ``bert-base-uncased/`` tokenizer
folder uses the real tokenizer.

Maximum duration: the UNet is fully convolutional and has no positional table, so nothing in the architecture
caps the length; the model was trained on 624-frame (~10 s) mel crops. This adapter caps requests at 30 s
(3x the training length, latent width 236): beyond that the output is outside anything the model was trained
on, and the VAE decoder's single-head attention (20 x 2W tokens at its second level) grows quadratically.

Checkpoints (``weights=<folder>``) use the original layout: ``maa1_full.ckpt`` (Lightning ``{"state_dict"}``,
original key names, mapped by :func:`.ckpt_maps.make_an_audio_table`), ``txt2audio_args.yaml`` (the original
inference config) and ``bigvgan/{args.yml, best_netG.pt}`` (the vocoder, ``{"generator": state_dict}``).
The BERT and CLAP sizes are also written to ``bert_config.json`` and ``clap_config.yml`` (absent from the
original folder, where the code fixes them; when absent, bert-base-uncased and MS-CLAP 2022 are used).
"""

from __future__ import annotations

import copy
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import yaml

from tta_energy.errors import first_line
from tta_energy.fileio import torch_save_atomic, write_json_atomic, write_text_atomic
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
from tta_energy.models.blocks.bigvgan import BigVGANConfig, BigVGANGenerator
from tta_energy.models.blocks.ddim import LdmDdimSampler, ldm_denoiser_calls
from tta_energy.models.blocks.msclap import ClapTextEncoder
from tta_energy.models.catalogue import entry
from tta_energy.models.ckpt_maps import (
    LDM_SCHEDULE_BUFFERS,
    SCALE_FACTOR,
    KeyTable,
    bigvgan_table,
    describe_mismatch,
)
from tta_energy.models.common import check_weights_dir, default_device, load_config

CONFIG_DIR = "make-an-audio"
TEXT_TOKENS = 77  # FrozenCLAPEmbedder(max_length=77), padding="max_length"
BERT_CLS, BERT_SEP, BERT_PAD = 101, 102, 0
#: original folder layout (``useful_ckpts/`` of the original repositories)
VOCODER_DIR, VOCODER_ARGS, VOCODER_WEIGHTS = "bigvgan", "args.yml", "best_netG.pt"
BERT_CONFIG_FILE, CLAP_CONFIG_FILE, BERT_TOKENIZER_DIR = (
    "bert_config.json",
    "clap_config.yml",
    "bert-base-uncased",
)
#: tiny sizes: same classes, blocks and layer counts, small widths (multiples of the 32 norm groups and of
#: the base width, so that the LDM yaml can express them)
TINY_BERT = {
    "vocab_size": 1000,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
TINY_CLAP = {"text_model": "bert-base-uncased", "transformer_embed_dim": 32, "d_proj": 32}
TINY_UNET = {"block_out_channels": [32, 64], "attention_head_dim": 2}
TINY_VAE = {"block_out_channels": [32, 32, 32, 64]}
#: BigVGAN halves its width over 6 stages: 64 ends with one channel
TINY_VOCODER_CHANNELS = 64


# -- shared with Make-An-Audio 2 -------------------------------------------------------------------------
def synthetic_text_ids(
    texts: list[str], length: int, vocab_size: int, *, bos: int | None, eos: int, pad: int
) -> torch.Tensor:
    """Token ids of the real padded length for replicas: one id per word, framed by ``bos``/``eos``, seeded
    by the text (the same prompt always gives the same ids; ``""`` gives just the frame)."""
    rows = []
    frame = 1 + (bos is not None)
    for text in texts:
        words = len(re.findall(r"\w+|[^\w\s]", text))
        n = min(length, words + frame)
        g = torch.Generator().manual_seed(zlib.crc32(text.encode()))
        row = torch.full((length,), pad, dtype=torch.long)
        row[:n] = torch.randint(1000 if vocab_size > 2000 else 5, vocab_size, (n,), generator=g)
        if bos is not None:
            row[0] = bos
        row[n - 1] = eos
        rows.append(row)
    return torch.stack(rows)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a YAML mapping")
    return data


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object")
    return data


def read_checkpoint(path: Path, key: str) -> dict[str, torch.Tensor]:
    """``torch.load(path)[key]`` with tensors only (``weights_only``); one clear line if that fails."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"cannot read checkpoint {path} as tensors only: {type(exc).__name__} {first_line(exc, '')[:160]}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        found = ", ".join(map(str, list(data)[:5])) if isinstance(data, dict) else type(data).__name__
        raise ModelError(f"checkpoint {path} has the wrong layout: no {key!r} entry (found {found})")
    return data[key]


def load_strict(
    module: torch.nn.Module, table: KeyTable, original: dict[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Map ``original`` through ``table`` and load it into ``module`` strictly; returns the table's extras.

    Every module tensor must be present with its shape and no entry may be left unmapped; otherwise one
    line lists a few missing/unexpected/mis-shaped keys (by their original names) and their counts.
    """
    conv = table.to_project(original)
    expected = module.state_dict()
    missing = [table.original_key(k) or k for k in expected if k not in conv.state_dict]
    missing += [k for k in table.extra_keys if k not in conv.extras]
    unexpected = list(conv.unexpected) + [
        table.original_key(k) or k for k in conv.state_dict if k not in expected
    ]
    wrong = [
        f"{table.original_key(k)} {tuple(v.shape)}!={tuple(expected[k].shape)}"
        for k, v in conv.state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise ModelError(describe_mismatch(table.model, source, sorted(set(missing)), unexpected, wrong))
    module.load_state_dict(conv.state_dict, strict=True)
    return conv.extras


def ldm_schedule_buffers(linear_start: float, linear_end: float, timesteps: int) -> dict[str, torch.Tensor]:
    """LatentDiffusion's ``register_schedule`` buffers (saved in its checkpoints), float64 math -> float32."""
    betas = np.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=np.float64) ** 2
    alphas = 1.0 - betas
    cum = np.cumprod(alphas)
    prev = np.append(1.0, cum[:-1])
    post_var = betas * (1.0 - prev) / (1.0 - cum)
    values = {
        "betas": betas,
        "alphas_cumprod": cum,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": np.sqrt(cum),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - cum),
        "log_one_minus_alphas_cumprod": np.log(1.0 - cum),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / cum),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / cum - 1),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(prev) / (1.0 - cum),
        "posterior_mean_coef2": (1.0 - prev) * np.sqrt(alphas) / (1.0 - cum),
    }
    assert set(values) == set(LDM_SCHEDULE_BUFFERS)
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}


def check_schedule(extras: dict[str, torch.Tensor], params: dict[str, Any], source: str) -> float:
    """The checkpoint's ``betas`` must be the yaml's schedule; returns its ``scale_factor``."""
    expected = ldm_schedule_buffers(
        float(params["linear_start"]), float(params["linear_end"]), int(params["timesteps"])
    )["betas"]
    betas = extras["betas"].float()
    if betas.shape != expected.shape or not torch.allclose(betas, expected, rtol=1e-4, atol=1e-7):
        raise ModelError(
            f"{source}: its noise schedule (betas) differs from the config's linear "
            f"{params['linear_start']}..{params['linear_end']} schedule"
        )
    return float(extras[SCALE_FACTOR].reshape(-1)[0])


def read_vocoder_config(folder: Path) -> BigVGANConfig:
    """The BigVGAN settings of an original weights folder (``bigvgan/args.yml``)."""
    try:
        return BigVGANConfig.from_args(read_yaml(folder / VOCODER_DIR / VOCODER_ARGS))
    except ValueError as exc:
        raise ModelError(f"{folder / VOCODER_DIR / VOCODER_ARGS}: {exc}") from None


def load_vocoder(folder: Path, config: BigVGANConfig, device: torch.device) -> BigVGANGenerator:
    """BigVGAN of ``config`` with the weights of ``bigvgan/best_netG.pt``, loaded strictly."""
    with default_device(device):
        vocoder = BigVGANGenerator(config)
    table = vocoder_table(config)
    original = read_checkpoint(folder / VOCODER_DIR / VOCODER_WEIGHTS, "generator")
    load_strict(vocoder, table, original, str(folder / VOCODER_DIR / VOCODER_WEIGHTS))
    return vocoder


def vocoder_table(config: BigVGANConfig) -> KeyTable:
    return bigvgan_table(
        len(config.upsample_rates), len(config.resblock_kernel_sizes), len(config.resblock_dilation_sizes[0])
    )


def save_vocoder(vocoder: BigVGANGenerator, folder: Path) -> None:
    (folder / VOCODER_DIR).mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu() for k, v in vocoder.state_dict().items()}
    original = vocoder_table(vocoder.config).to_original(state)
    torch_save_atomic({"generator": original}, folder / VOCODER_DIR / VOCODER_WEIGHTS)
    write_text_atomic(
        folder / VOCODER_DIR / VOCODER_ARGS, yaml.safe_dump(vocoder.config.to_args(), sort_keys=False)
    )


def folder_tokenizer(folder: Path, subfolder: str) -> Any | None:
    """The real tokenizer in ``folder / subfolder`` when the weights folder carries one (read offline), else
    None (``bert-base-uncased`` for the CLAP text, ``t5-v1_1-large`` for Make-An-Audio 2's T5)."""
    if not (folder / subfolder).is_dir():
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder / subfolder), local_files_only=True)
    except Exception as exc:
        raise ModelError(f"cannot load the tokenizer in {folder / subfolder}: {type(exc).__name__}") from None


class LatentAudioAdapter(ModelAdapter):
    """What Make-An-Audio 1 and 2 share: CLAP text ids, the LDM DDIM loop with CFG, BigVGAN per clip."""

    #: the original's checkpoint and config file names
    checkpoint_file: ClassVar[str]
    config_file: ClassVar[str]

    def __init__(
        self,
        *,
        size: str,
        weights: str,
        device: torch.device,
        dtype: torch.dtype,
        modules: torch.nn.ModuleDict,
        vocoder: BigVGANGenerator,
        ldm_config: dict[str, Any],
        scale_factor: float,
        bert_tokenizer: Any | None = None,
    ) -> None:
        super().__init__(size=size, weights=weights, device=device, dtype=dtype)
        self.modules = modules  # everything in the Lightning checkpoint, keyed as the table's project names
        self.vocoder = vocoder
        self.ldm_config = ldm_config  # the original yaml (sizes as built), written back by save_pretrained
        self.scale_factor = scale_factor
        self.bert_tokenizer = bert_tokenizer
        params = ldm_config["model"]["params"]
        self.sampler = LdmDdimSampler(
            float(params["linear_start"]), float(params["linear_end"]), int(params["timesteps"])
        )
        self._denoiser = modules[self.denoiser_name]
        for m in [*modules.values(), vocoder]:
            m.to(device=device).eval().requires_grad_(False)
            if any(p.dtype != dtype for p in m.parameters()):  # diffusers warns on each dtype cast
                m.to(dtype=dtype)

    # -- construction: ModelAdapter.build's hooks for both models; subclasses give the configs, modules and
    # key table ---------------------------------------------------------------------------------------------
    @classmethod
    def _build_random(cls, size: str, device: torch.device, dtype: torch.dtype) -> LatentAudioAdapter:
        config = cls._bundled_config(size)
        modules = cls._modules(config, device)
        with default_device(device):
            vocoder = BigVGANGenerator(config.vocoder)
        return cls(size=size, weights="random", device=device, dtype=dtype, modules=modules,
                   vocoder=vocoder, ldm_config=config.ldm, scale_factor=1.0, config=config)

    @classmethod
    def _load_weights(
        cls, weights: str, size: str, device: torch.device, dtype: torch.dtype
    ) -> LatentAudioAdapter:
        """The original checkpoint folder: Lightning checkpoint, inference yaml and BigVGAN."""
        folder = check_weights_dir(
            Path(weights),
            [cls.checkpoint_file, cls.config_file, f"{VOCODER_DIR}/{VOCODER_ARGS}",
             f"{VOCODER_DIR}/{VOCODER_WEIGHTS}"],
            cls.name,
            files=True,
        )
        config = cls._folder_config(folder)
        modules = cls._modules(config, device)
        source = str(folder / cls.checkpoint_file)
        original = cls._prepare_checkpoint(read_checkpoint(folder / cls.checkpoint_file, "state_dict"))
        extras = load_strict(modules, cls._key_table(config), original, source)
        scale_factor = check_schedule(extras, config.ldm["model"]["params"], source)
        vocoder = load_vocoder(folder, config.vocoder, device)
        return cls(size=size, weights=str(weights), device=device, dtype=dtype, modules=modules,
                   vocoder=vocoder, ldm_config=config.ldm, scale_factor=scale_factor, config=config,
                   **cls._tokenizers(folder))

    @staticmethod
    def _prepare_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Normalise an original checkpoint's state dict before the strict load (default: as it is)."""
        return state_dict

    @staticmethod
    def _tokenizers(folder: Path) -> dict[str, Any]:
        """Real tokenizers found in a weights folder, as constructor arguments."""
        return {"bert_tokenizer": folder_tokenizer(folder, BERT_TOKENIZER_DIR)}

    @property
    def text_encoder(self) -> ClapTextEncoder:
        return self.modules["text_encoder"]

    def denoiser_calls(self, steps: int) -> int:
        """LDM's uniform DDIM spacing: ``ceil(1000 / (1000 // steps))`` calls (150 steps -> 167)."""
        try:
            return ldm_denoiser_calls(steps, self.sampler.train_timesteps)
        except ValueError as exc:
            raise ModelError(f"{self.name}: {exc}") from None

    # -- hooks for the subclasses ---------------------------------------------------------------------------
    def latent_shape(self, duration_s: float, n: int) -> tuple[int, ...]:
        raise NotImplementedError

    def encode_text(self, captions: list[str], extra: dict[str, object], unconditional: bool) -> torch.Tensor:
        raise NotImplementedError

    def run_denoiser(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> mel (n, 80, frames)."""
        raise NotImplementedError

    # -- shared pieces -------------------------------------------------------------------------------------
    def clap_ids(self, texts: list[str]) -> torch.Tensor:
        if self.bert_tokenizer is not None:
            out = self.bert_tokenizer(
                texts, truncation=True, max_length=TEXT_TOKENS, padding="max_length", return_tensors="pt"
            )
            return out["input_ids"].to(self.device)
        ids = synthetic_text_ids(
            texts, TEXT_TOKENS, self.text_encoder.vocab_size, bos=BERT_CLS, eos=BERT_SEP, pad=BERT_PAD
        )
        return ids.to(self.device)

    def check_request(self, request: GenerationRequest) -> None:
        super().check_request(request)
        self.denoiser_calls(request.steps)  # rejects step counts LDM's spacing cannot run
        duration = self.resolved(request).duration_s
        if self.latent_shape(duration, 1)[-1] < 1:
            raise ModelError(
                f"duration {duration} s is too short for {self.name}: its latent would have no frames"
            )
        self.check_not_meta()

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """BigVGAN per clip, as the original's ``vocoder.vocode(spec)`` loop: (n, 80, F) -> (n, F * hop)."""
        return torch.cat([self.vocoder(mel[i : i + 1]).reshape(1, -1) for i in range(mel.shape[0])])

    def generate(self, request: GenerationRequest, phases: PhaseHook = no_phases) -> GenerationOutput:
        self.check_request(request)
        req = self.resolved(request)
        scale = float(req.guidance_scale)
        cfg = self.defaults.runs_guidance(scale)  # the original skips the unconditional branch only at 1
        captions = [p for p in req.prompts for _ in range(req.waveforms_per_prompt)]
        n = len(captions)
        from diffusers.utils.torch_utils import randn_tensor

        with torch.inference_mode():
            with phases("text_encoding"):
                cond = self.encode_text(captions, req.extra, unconditional=False)
                uncond = (
                    self.encode_text([req.negative_prompt or ""] * n, req.extra, unconditional=True)
                    if cfg
                    else None
                )
                context = torch.cat([uncond, cond]) if cfg else cond
            # float32 start code, as gen_wav.py draws it
            noise = randn_tensor(
                self.latent_shape(req.duration_s, n),
                generator=self.generator(req.seed),
                device=self.device,
                dtype=torch.float32,
            ).to(self.dtype)

            def guided_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                if not cfg:
                    return self.run_denoiser(x, t, context)
                e_uncond, e_cond = self.run_denoiser(torch.cat([x, x]), torch.cat([t, t]), context).chunk(2)
                return e_uncond + scale * (e_cond - e_uncond)

            with phases("denoising"):
                latents, calls = self.sampler.sample(noise, req.steps, guided_eps)
            with phases("decoding"):
                mel = self.decode_latents(latents / self.scale_factor)
            with phases("vocoder"):
                waves = self.vocode(mel)
        rate = self.defaults.sample_rate  # the catalogue's: BigVGAN's 16 kHz
        samples = int(round(req.duration_s * rate))
        out = waves.float().cpu().numpy()
        if out.shape[1] < samples:  # the original pads short clips with zeros
            out = np.pad(out, ((0, 0), (0, samples - out.shape[1])))
        return GenerationOutput(
            waveforms=out[:, None, :samples].astype(np.float32),
            sample_rate=rate,
            denoiser_calls=calls,
            latents=latents,
        )

    # -- save -----------------------------------------------------------------------------------------------
    def original_state_dict(self) -> dict[str, torch.Tensor]:
        """The Lightning ``state_dict`` in the original key names (with schedule buffers and scale_factor)."""
        params = self.ldm_config["model"]["params"]
        extras = ldm_schedule_buffers(
            float(params["linear_start"]), float(params["linear_end"]), int(params["timesteps"])
        )
        extras[SCALE_FACTOR] = torch.tensor(self.scale_factor, dtype=torch.float32)
        state = {k: v.detach().float().cpu() for k, v in self.modules.state_dict().items()}
        return self.table().to_original(state, extras)

    def table(self) -> KeyTable:
        raise NotImplementedError

    def save_common(self, folder: Path) -> None:
        if self.device.type == "meta":
            raise ModelError("a model on the meta device has no weights to save")
        folder.mkdir(parents=True, exist_ok=True)
        torch_save_atomic({"state_dict": self.original_state_dict()}, folder / self.checkpoint_file)
        write_text_atomic(folder / self.config_file, yaml.safe_dump(self.ldm_config, sort_keys=False))
        write_text_atomic(folder / CLAP_CONFIG_FILE, yaml.safe_dump(self.clap_config(), sort_keys=False))
        write_json_atomic(folder / BERT_CONFIG_FILE, self.text_encoder.bert.config.to_diff_dict())
        save_vocoder(self.vocoder, folder)

    def clap_config(self) -> dict[str, Any]:
        bert = self.text_encoder.bert.config
        return {
            "text_model": "bert-base-uncased",
            "transformer_embed_dim": bert.hidden_size,
            "d_proj": self.text_encoder.projection.norm.normalized_shape[0],
        }


def read_bert_and_clap(folder: Path | None, size: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """BERT and CLAP settings: the folder's files when present, else bert-base-uncased / MS-CLAP 2022."""
    bert: dict[str, Any] = dict(TINY_BERT) if size == "tiny" else {}  # {} -> BertConfig() = bert-base-uncased
    clap = dict(TINY_CLAP) if size == "tiny" else load_config(CONFIG_DIR, "config.yml")
    if folder is not None:
        bert = read_json(folder / BERT_CONFIG_FILE) if (folder / BERT_CONFIG_FILE).is_file() else {}
        clap = (
            read_yaml(folder / CLAP_CONFIG_FILE)
            if (folder / CLAP_CONFIG_FILE).is_file()
            else load_config(CONFIG_DIR, "config.yml")
        )
    if int(clap["transformer_embed_dim"]) != int(bert.get("hidden_size", 768)):
        raise ModelError(
            f"CLAP transformer_embed_dim {clap['transformer_embed_dim']} differs from the BERT "
            f"hidden size {bert.get('hidden_size', 768)}"
        )
    return bert, clap


def build_clap(bert: dict[str, Any], clap: dict[str, Any]) -> ClapTextEncoder:
    from transformers import BertConfig

    return ClapTextEncoder(BertConfig(**bert), int(clap["d_proj"]))


# -- Make-An-Audio configs: LDM yaml <-> diffusers ---------------------------------------------------------
def unet_config_from_ldm(params: dict[str, Any]) -> dict[str, Any]:
    """LDM ``openaimodel.UNetModel`` parameters -> the equivalent diffusers ``UNet2DConditionModel``."""
    if int(params.get("num_head_channels", -1)) != -1:
        raise ModelError("unet_config: num_head_channels is not supported (Make-An-Audio sets num_heads)")
    if not params.get("use_spatial_transformer", False) or params.get("use_linear_in_transformer", False):
        raise ModelError("unet_config: only spatial transformers with 1x1-conv projections are supported")
    mult = [int(m) for m in params["channel_mult"]]
    attention = [2**i in set(params["attention_resolutions"]) for i in range(len(mult))]
    return {
        "sample_size": int(params.get("image_size", 32)),
        "in_channels": int(params["in_channels"]),
        "out_channels": int(params["out_channels"]),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        "block_out_channels": [int(params["model_channels"]) * m for m in mult],
        "layers_per_block": int(params["num_res_blocks"]),
        "attention_head_dim": int(params["num_heads"]),  # diffusers' legacy name for the number of heads
        "cross_attention_dim": int(params["context_dim"]),
        "use_linear_projection": False,
        "transformer_layers_per_block": int(params.get("transformer_depth", 1)),
        "norm_num_groups": 32,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


def ldm_unet_params(unet: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`unet_config_from_ldm` (keys diffusers does not carry come from ``template``)."""
    base = int(unet["block_out_channels"][0])
    params = dict(template)
    params.update(
        in_channels=int(unet["in_channels"]),
        out_channels=int(unet["out_channels"]),
        model_channels=base,
        channel_mult=[int(c) // base for c in unet["block_out_channels"]],
        attention_resolutions=[
            2**i for i, t in enumerate(unet["down_block_types"]) if t.startswith("CrossAttn")
        ],
        num_res_blocks=int(unet["layers_per_block"]),
        num_heads=int(unet["attention_head_dim"]),
        context_dim=int(unet["cross_attention_dim"]),
        transformer_depth=int(unet.get("transformer_layers_per_block", 1)),
    )
    if int(unet.get("norm_num_groups", 32)) != 32:
        params["norm_num_groups"] = int(unet["norm_num_groups"])  # not an LDM key: only tiny replicas
    return params


def vae_config_from_ldm(embed_dim: int, dd: dict[str, Any]) -> dict[str, Any]:
    """LDM ``AutoencoderKL(embed_dim, ddconfig)`` -> the equivalent diffusers ``AutoencoderKL`` config."""
    if int(embed_dim) != int(dd["z_channels"]) or not dd.get("double_z", True):
        raise ModelError(
            "first_stage_config: embed_dim must equal z_channels with double_z (as Make-An-Audio)"
        )
    mult = [int(m) for m in dd["ch_mult"]]
    res = int(dd["resolution"])
    attention = [res // 2**i in set(dd.get("attn_resolutions", [])) for i in range(len(mult))]
    config = {
        "in_channels": int(dd["in_channels"]),
        "out_channels": int(dd["out_ch"]),
        "down_block_types": ["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attention],
        "up_block_types": ["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attention)],
        "block_out_channels": [int(dd["ch"]) * m for m in mult],
        "latent_channels": int(dd["z_channels"]),
        "layers_per_block": int(dd["num_res_blocks"]),
    }
    if "norm_num_groups" in dd:
        config["norm_num_groups"] = int(dd["norm_num_groups"])
    return config


def ldm_vae_params(vae: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`vae_config_from_ldm`: ``first_stage_config.params`` for the yaml."""
    params = copy.deepcopy(template)
    dd = params["ddconfig"]
    base = int(vae["block_out_channels"][0])
    res = int(dd["resolution"])
    dd.update(
        in_channels=int(vae["in_channels"]),
        out_ch=int(vae["out_channels"]),
        ch=base,
        ch_mult=[int(c) // base for c in vae["block_out_channels"]],
        z_channels=int(vae["latent_channels"]),
        num_res_blocks=int(vae["layers_per_block"]),
        attn_resolutions=sorted(
            res // 2**i for i, t in enumerate(vae["down_block_types"]) if t.startswith("Attn")
        ),
    )
    if int(vae.get("norm_num_groups", 32)) != 32:
        dd["norm_num_groups"] = int(vae["norm_num_groups"])
    params["embed_dim"] = int(vae["latent_channels"])
    return params


@dataclass
class MakeAnAudioConfig:
    ldm: dict[str, Any]  # the original yaml
    unet: dict[str, Any]
    vae: dict[str, Any]
    bert: dict[str, Any]
    clap: dict[str, Any]
    vocoder: BigVGANConfig


def bundled_config(size: str) -> MakeAnAudioConfig:
    unet = load_config(CONFIG_DIR, "unet_config.diffusers_equivalent.json")
    vae = load_config(CONFIG_DIR, "vae_config.diffusers_equivalent.json")
    vocoder = load_config(CONFIG_DIR, "bigvgan_args.yaml")
    bert, clap = read_bert_and_clap(None, size)
    if size == "tiny":
        unet.update(TINY_UNET, cross_attention_dim=int(clap["d_proj"]))
        vae.update(TINY_VAE)
        vocoder["upsample_initial_channel"] = TINY_VOCODER_CHANNELS
    ldm = load_config(CONFIG_DIR, "txt2audio_args.yaml")
    params = ldm["model"]["params"]
    params["unet_config"]["params"] = ldm_unet_params(unet, params["unet_config"]["params"])
    params["first_stage_config"]["params"] = ldm_vae_params(vae, params["first_stage_config"]["params"])
    return MakeAnAudioConfig(ldm, unet, vae, bert, clap, BigVGANConfig.from_args(vocoder))


def config_from_folder(folder: Path, config_file: str) -> MakeAnAudioConfig:
    ldm = read_yaml(folder / config_file)
    try:
        params = ldm["model"]["params"]
        unet_params = params["unet_config"]["params"]
        first_stage = params["first_stage_config"]["params"]
        unet = unet_config_from_ldm(unet_params)
        if "norm_num_groups" in unet_params:
            unet["norm_num_groups"] = int(unet_params["norm_num_groups"])
        vae = vae_config_from_ldm(first_stage["embed_dim"], first_stage["ddconfig"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{folder / config_file} is not a Make-An-Audio config: no {exc} entry") from None
    bert, clap = read_bert_and_clap(folder, "full")
    return MakeAnAudioConfig(ldm, unet, vae, bert, clap, read_vocoder_config(folder))


def latent_width(duration_s: float) -> int:
    """``gen_wav.dur_to_size``: ``int(duration * 7.8)`` rounded up to a multiple of 4."""
    width = int(duration_s * 7.8)
    return width if width % 4 == 0 else (width // 4 + 1) * 4


class MakeAnAudioAdapter(LatentAudioAdapter):
    """Make-An-Audio (maa1_full) behind the common adapter interface."""

    name = "make-an-audio"
    defaults: ClassVar[ModelDefaults] = entry("make-an-audio").defaults
    denoiser_name = "unet"
    repeated_blocks = UNET_BLOCKS
    checkpoint_file = "maa1_full.ckpt"
    config_file = "txt2audio_args.yaml"

    def __init__(self, *, config: MakeAnAudioConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.latent_channels = int(config.ldm["model"]["params"]["channels"])
        self.latent_height = int(config.ldm["model"]["params"]["mel_dim"])

    @property
    def unet(self) -> torch.nn.Module:
        return self.modules["unet"]

    @property
    def vae(self) -> torch.nn.Module:
        return self.modules["vae"]

    # -- construction: the template is LatentAudioAdapter.build ----------------------------------------------
    @staticmethod
    def _bundled_config(size: str) -> MakeAnAudioConfig:
        return bundled_config(size)

    @classmethod
    def _folder_config(cls, folder: Path) -> MakeAnAudioConfig:
        return config_from_folder(folder, cls.config_file)

    @staticmethod
    def _key_table(config: MakeAnAudioConfig) -> KeyTable:
        return make_an_audio_table_for(config)

    @staticmethod
    def _modules(config: MakeAnAudioConfig, device: torch.device) -> torch.nn.ModuleDict:
        from diffusers import AutoencoderKL, UNet2DConditionModel

        with default_device(device):
            return torch.nn.ModuleDict(
                {
                    "text_encoder": build_clap(config.bert, config.clap),
                    "unet": UNet2DConditionModel.from_config(config.unet),
                    "vae": AutoencoderKL.from_config(config.vae),
                }
            )

    def table(self) -> KeyTable:
        return make_an_audio_table_for(self.config)

    def save_pretrained(self, path: str | Path) -> None:
        """The original layout: ``maa1_full.ckpt``, ``txt2audio_args.yaml``, ``bigvgan/`` (+ BERT/CLAP)."""
        self.save_common(Path(path))

    def components(self) -> dict[str, torch.nn.Module]:
        return {
            "text_encoder": self.text_encoder,
            "unet": self.unet,
            "vae": self.vae,
            "vocoder": self.vocoder,
        }

    # -- generation -----------------------------------------------------------------------------------------
    def latent_shape(self, duration_s: float, n: int) -> tuple[int, ...]:
        return (n, self.latent_channels, self.latent_height, latent_width(duration_s))

    def encode_text(self, captions: list[str], extra: dict[str, object], unconditional: bool) -> torch.Tensor:
        return self.text_encoder(self.clap_ids(captions))

    @staticmethod
    def unet_kwargs(context: torch.Tensor) -> dict[str, object]:
        """The UNet call's keyword arguments, in the loop and in the example step (:meth:`denoiser_call`)
        alike, so that a CUDA graph captured on the example replays in the loop."""
        return {"encoder_hidden_states": context, "return_dict": False}

    def run_denoiser(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.denoiser(x, t, **self.unet_kwargs(context))[0]

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z, return_dict=False)[0].squeeze(1)  # (n, 1, 80, F) -> (n, 80, F)

    # -- describe -------------------------------------------------------------------------------------------
    def denoiser_call(self, duration_s: float = 10.0, batch: int = 1) -> ModuleCall:
        """One UNet step with CFG: ``(2B, 4, 10, 80)`` latents for 10 s, ``(2B, 77, 1024)`` CLAP tokens."""
        x = torch.zeros(self.latent_shape(duration_s, 2 * batch), device=self.device, dtype=self.dtype)
        context = torch.zeros(
            2 * batch, TEXT_TOKENS, self.unet.config.cross_attention_dim, device=self.device, dtype=self.dtype
        )
        t = torch.full((2 * batch,), 981, dtype=torch.long, device=self.device)
        return ModuleCall(self.denoiser_name, self.denoiser, (x, t), self.unet_kwargs(context))

    def per_generation_calls(self, duration_s: float = 10.0, batch: int = 1) -> list[ModuleCall]:
        """CLAP text on the prompt and on ``""`` (77 tokens each), the VAE decoder, BigVGAN (B, 80, 8W)."""
        ids = torch.zeros(batch, TEXT_TOKENS, dtype=torch.long, device=self.device)
        z = torch.zeros(self.latent_shape(duration_s, batch), device=self.device, dtype=self.dtype)
        mel = torch.zeros(
            batch, self.vocoder.config.num_mels, z.shape[-1] * 8, device=self.device, dtype=self.dtype
        )
        return [
            ModuleCall("text_encoder", self.text_encoder, (ids,)),
            ModuleCall("text_encoder (unconditional)", self.text_encoder, (ids,)),
            ModuleCall("vae", self.vae, (z,), method="decode"),
            ModuleCall("vocoder", self.vocoder, (mel,)),
        ]


def make_an_audio_table_for(config: MakeAnAudioConfig) -> KeyTable:
    from tta_energy.models.ckpt_maps import make_an_audio_table

    return make_an_audio_table(config.unet, config.vae)
