"""AudioLDM 2 (``cvssp/audioldm2``) behind the adapter interface.

Built from diffusers' ``AudioLDM2Pipeline`` components (``ClapModel``, ``T5EncoderModel`` = Flan-T5-large,
``AudioLDM2ProjectionModel``, ``GPT2Model``, ``AudioLDM2UNet2DConditionModel``, ``AutoencoderKL``,
``SpeechT5HifiGan``, ``DDIMScheduler``) and the bundled configs (``models/configs/audioldm2``,
reconstructed from diffusers' conversion script). ``generate`` runs what the study's
``pipe(prompt, negative_prompt="Low quality.", num_inference_steps=N, audio_length_in_s=10.0,
num_waveforms_per_prompt=W)`` call computed:

* text_encoding: CLAP text features (512-token padding, :data:`~.audioldm.CLAP_TOKEN_LENGTH`) and Flan-T5
  hidden states of the prompt, projected and fed to GPT-2, which generates 8 "LOA" embeddings
  autoregressively with a KV cache; the same for the negative prompt (T5 padded to the prompt's length);
* denoising: the DDIM loop, CFG as one UNet batch of 2B (negative first);
* decoding: VAE decode to a mel spectrogram;
* vocoder: HiFi-GAN, cut to the duration, and, when ``waveforms_per_prompt > 1``, the pipeline's
  re-ranking of the waveforms by CLAP audio-text similarity (``score_waveforms``: resample to 48 kHz,
  CLAP feature extraction, CLAP audio + text branches). The re-ranking is part of the study's measured
  call, so it is measured, inside the vocoder phase (no separate phase column).

GPT-2 generation: diffusers 0.42's ``generate_language_model`` calls ``GenerationMixin`` methods that
``GPT2Model`` no longer has in transformers >= 4.50 (huggingface/diffusers#12630), so this module runs the
same loop itself (:class:`LanguageModelGeneration`): one pass over the projected prompt, then one cached
single-token pass per new token, the attention mask growing by one each time: what the pipeline ran with
the transformers of the study. The tests check it against the pipeline's method on a ``GPT2LMHeadModel``.

T5 tokens of a replica: :func:`~.audioldm.estimated_token_count` + EOS (20 for the study prompt).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from tta_energy.models.audioldm import (
    AudioLDMFamilyAdapter,
    UNetConditioning,
    clap_synthetic_ids,
    estimated_token_count,
    text_seed,
    unet_call_kwargs,
)
from tta_energy.models.base import GenerationRequest, ModuleCall
from tta_energy.models.catalogue import entry
from tta_energy.models.common import load_config, synthetic_token_ids
from tta_energy.models.tiny import (
    TINY_HIDDEN,
    TINY_PROJECTION,
    tiny_autoencoder_kl,
    tiny_bert_like,
    tiny_gpt2,
    tiny_hifigan,
    tiny_t5,
    tiny_unet2d,
)
from tta_energy.study import STUDY_PROMPT

#: The prompt of the study's steps/batch experiments; its T5 length sets the per-step cost ``describe`` shows.
#: Flan-T5 special ids (pad 0, eos 1) and the pipeline's hard-set ``tokenizer_2.model_max_length``
T5_PAD, T5_EOS, T5_MAX_LENGTH = 0, 1, 128
#: Tokens GPT-2 generates (``language_model.config.max_new_tokens``, the original's sequence_gen_length)
LOA_TOKENS = 8
#: laion/clap-htsat-unfused feature extractor: 48 kHz, 10 s windows, random-crop truncation (no fusion).
#: Only ``truncation`` differs from ClapFeatureExtractor's defaults (``fusion`` would feed 4 mel views).
FEATURE_EXTRACTOR_KWARGS: dict[str, Any] = {"truncation": "rand_trunc"}


def t5_token_count(text: str) -> int:
    """Flan-T5 tokens of ``text`` including EOS, capped at the pipeline's 128."""
    return min(T5_MAX_LENGTH, estimated_token_count(text) + 1)


def t5_synthetic_ids(texts: list[str], vocab_size: int, length: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic T5 ids: estimated tokens + EOS, padded to ``length`` (None: the longest, as
    ``padding=True``)."""
    counts = [t5_token_count(t) for t in texts]
    width = max(counts) if length is None else length
    rows = [synthetic_token_ids(1, width, vocab_size, eos=T5_EOS, pad=T5_PAD, content_tokens=min(c, width),
                                seed=text_seed(t)) for t, c in zip(texts, counts, strict=True)]
    return torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows])


class LanguageModelGeneration(torch.nn.Module):
    """GPT-2 generating ``max_new_tokens`` hidden states from ``inputs_embeds`` (AudioLDM 2's "LOA" tokens).

    Each new token is the last position's final hidden state, appended to the input; passes after the
    first one see only the new token and reuse the key/value cache. Works with ``GPT2Model`` and
    ``GPT2LMHeadModel`` (whose LM head then also runs, as in the pipeline).
    """

    def __init__(self, language_model: torch.nn.Module, max_new_tokens: int = LOA_TOKENS) -> None:
        super().__init__()
        self.language_model = language_model
        self.max_new_tokens = max_new_tokens

    def forward(self, inputs_embeds: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``attention_mask`` None means all ones (same compute; used for FLOP counts on the meta device)."""
        past = None
        for _ in range(self.max_new_tokens):
            step_input = inputs_embeds if past is None else inputs_embeds[:, -1:]
            out = self.language_model(inputs_embeds=step_input, attention_mask=attention_mask,
                                      past_key_values=past, use_cache=True, output_hidden_states=True,
                                      return_dict=True)
            inputs_embeds = torch.cat([inputs_embeds, out.hidden_states[-1][:, -1:, :]], dim=1)
            past = out.past_key_values
            if attention_mask is not None:
                ones = attention_mask.new_ones((attention_mask.shape[0], 1))
                attention_mask = torch.cat([attention_mask, ones], dim=-1)
        return inputs_embeds[:, -self.max_new_tokens:, :]


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """(N, samples) resampled along time with soxr HQ: librosa's default (``res_type='soxr_hq'``)."""
    import soxr

    if source_rate == target_rate:
        return audio
    return np.stack([soxr.resample(row, source_rate, target_rate, quality="HQ") for row in audio])


class AudioLDM2Adapter(AudioLDMFamilyAdapter):
    """AudioLDM 2 (full): CLAP + Flan-T5 + GPT-2 conditioning, UNet with two cross-attention streams."""

    name = "audioldm2"
    defaults = entry("audioldm2").defaults
    config_dir: ClassVar[str] = "audioldm2"
    pipeline_name = "AudioLDM2Pipeline"
    components_required: ClassVar[list[str]] = ["text_encoder", "text_encoder_2", "projection_model",
                                                "language_model", "unet", "vae", "vocoder", "scheduler"]

    def __init__(self, pipe: Any, **kwargs: Any) -> None:
        super().__init__(pipe, **kwargs)
        self.lm_generation = LanguageModelGeneration(
            pipe.language_model, int(getattr(pipe.language_model.config, "max_new_tokens", LOA_TOKENS)))

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def configs(cls, size: str) -> dict[str, dict[str, Any]]:
        d = cls.config_dir
        clap = load_config(d, "text_encoder_config.reconstructed.json")
        text = dict(clap["text_config"])
        audio = dict(clap["audio_config_overrides"])
        projection_dim = int(clap["projection_dim"])
        t5 = {k: v for k, v in load_config(d, "text_encoder_2_config.reconstructed.json").items()
              if k != "tokenizer_model_max_length"}
        gpt2 = load_config(d, "language_model_config.reconstructed.json")
        projection = load_config(d, "projection_model_config.reconstructed.json")
        unet = load_config(d, "unet_config.reconstructed.json")
        vae = {k: v for k, v in load_config(d, "vae_config.reconstructed.json").items() if v is not None}
        vocoder = load_config(d, "vocoder_config.reconstructed.json")
        scheduler = load_config(d, "scheduler_config.reconstructed.json")
        if size == "tiny":
            text = tiny_bert_like(text)
            # HTSAT keeps its 4 Swin stages, spectrogram size and windows; one block per stage, narrow
            audio.update(patch_embeds_hidden_size=16, hidden_size=128, depths=[1, 1, 1, 1],
                         num_attention_heads=[1, 2, 4, 8])
            projection_dim = TINY_PROJECTION
            t5, gpt2 = tiny_t5(t5), tiny_gpt2(gpt2)
            projection = {"text_encoder_dim": TINY_PROJECTION, "text_encoder_1_dim": TINY_HIDDEN,
                          "langauge_model_dim": TINY_HIDDEN}
            unet = tiny_unet2d(unet, cross_attention_dim=[[None, TINY_HIDDEN, TINY_HIDDEN]] * 4)
            vae, vocoder = tiny_autoencoder_kl(vae), tiny_hifigan(vocoder)
        clap = {"text_config": text, "audio_config": audio, "projection_dim": projection_dim}
        return {"text_encoder": clap,
                "text_encoder_2": t5, "language_model": gpt2, "projection_model": projection, "unet": unet,
                "vae": vae, "vocoder": vocoder, "scheduler": scheduler}

    @classmethod
    def random_modules(cls, cfg: dict[str, dict[str, Any]]) -> dict[str, torch.nn.Module]:
        from diffusers import AutoencoderKL
        from diffusers.pipelines.audioldm2.modeling_audioldm2 import (
            AudioLDM2ProjectionModel,
            AudioLDM2UNet2DConditionModel,
        )
        from transformers import (
            ClapConfig,
            ClapModel,
            GPT2Config,
            GPT2Model,
            SpeechT5HifiGan,
            SpeechT5HifiGanConfig,
            T5Config,
            T5EncoderModel,
        )

        return {
            "text_encoder": ClapModel(ClapConfig(**cfg["text_encoder"])),
            "text_encoder_2": T5EncoderModel(T5Config(**cfg["text_encoder_2"])),
            "projection_model": AudioLDM2ProjectionModel.from_config(cfg["projection_model"]),
            "language_model": GPT2Model(GPT2Config(**cfg["language_model"])),
            "unet": AudioLDM2UNet2DConditionModel.from_config(cfg["unet"]),
            "vae": AutoencoderKL.from_config(cfg["vae"]),
            "vocoder": SpeechT5HifiGan(SpeechT5HifiGanConfig(**cfg["vocoder"])),
        }

    @classmethod
    def pipeline_parts(cls, cfg: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from diffusers import DDIMScheduler
        from transformers import ClapFeatureExtractor

        return {"tokenizer": None, "tokenizer_2": None,
                "feature_extractor": ClapFeatureExtractor(**FEATURE_EXTRACTOR_KWARGS),
                "scheduler": DDIMScheduler.from_config(cfg["scheduler"])}

    def components(self) -> dict[str, torch.nn.Module]:
        p = self.pipe
        return {"text_encoder": p.text_encoder, "text_encoder_2": p.text_encoder_2,
                "projection_model": p.projection_model, "language_model": p.language_model, "unet": p.unet,
                "vae": p.vae, "vocoder": p.vocoder}

    @property
    def has_tokenizers(self) -> bool:
        return self.pipe.tokenizer is not None and self.pipe.tokenizer_2 is not None

    # -- text -----------------------------------------------------------------------------------
    def clap_ids(self, texts: list[str], pad_to_max: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """CLAP ids as the pipeline makes them: padded to the maximum (prompt encoding) or to the longest
        (waveform scoring)."""
        tok = self.pipe.tokenizer
        if tok is not None:
            if pad_to_max:
                out = tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                          return_tensors="pt")
            else:
                out = tok(texts, padding=True, return_tensors="pt")
            ids, mask = out.input_ids, out.attention_mask
        else:
            vocab = self.pipe.text_encoder.config.text_config.vocab_size
            length = self.clap_token_length
            if not pad_to_max:
                length = min(length, max(estimated_token_count(t) + 2 for t in texts))
            ids, mask = clap_synthetic_ids(texts, vocab, length)
        return ids.to(self.device), mask.to(self.device)

    def t5_ids(self, texts: list[str], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Flan-T5 ids: padded to the longest (``length`` None: the prompt) or to ``length`` (negative)."""
        tok = self.pipe.tokenizer_2
        if tok is not None:
            if length is None:
                out = tok(texts, padding=True, max_length=tok.model_max_length, truncation=True,
                          return_tensors="pt")
            else:
                out = tok(texts, padding="max_length", max_length=length, truncation=True,
                          return_tensors="pt")
            ids, mask = out.input_ids, out.attention_mask
        else:
            ids, mask = t5_synthetic_ids(texts, self.pipe.text_encoder_2.config.vocab_size, length)
        return ids.to(self.device), mask.to(self.device)

    def encode_texts(self, texts: list[str], t5_length: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One side of ``encode_prompt``: (T5 hidden states, T5 mask, GPT-2 generated embeddings)."""
        pipe = self.pipe
        ids, mask = self.clap_ids(texts)
        clap = pipe.text_encoder.get_text_features(ids, attention_mask=mask)
        if hasattr(clap, "pooler_output"):
            clap = clap.pooler_output
        clap = clap[:, None, :]
        clap_mask = mask.new_ones((len(texts), 1))
        t5_ids, t5_mask = self.t5_ids(texts, t5_length)
        t5 = pipe.text_encoder_2(t5_ids, attention_mask=t5_mask)[0]
        projected = pipe.projection_model(hidden_states=clap, hidden_states_1=t5, attention_mask=clap_mask,
                                          attention_mask_1=t5_mask)
        generated = self.lm_generation(projected.hidden_states, projected.attention_mask)
        return t5, t5_mask, generated

    def prompt_embeddings(self, prompts: list[str], negative: str, n: int, cfg: bool
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(T5 embeddings, T5 mask, GPT-2 embeddings), each ``cat([negative, positive])`` when CFG is on,
        repeated ``n`` times per prompt by the pipeline's own ``encode_prompt``."""
        t5, t5_mask, generated = self.encode_texts(prompts)
        kwargs: dict[str, Any] = {}
        if cfg:
            negatives = [negative] * len(prompts)
            neg_t5, neg_mask, neg_generated = self.encode_texts(negatives, t5_length=t5.shape[1])
            kwargs = {"negative_prompt_embeds": neg_t5, "negative_attention_mask": neg_mask,
                      "negative_generated_prompt_embeds": neg_generated}
        return self.pipe.encode_prompt(None, self.device, n, cfg, prompt_embeds=t5, attention_mask=t5_mask,
                                       generated_prompt_embeds=generated, **kwargs)

    def score_waveforms(self, prompts: list[str], audio: torch.Tensor, n: int) -> torch.Tensor:
        """The pipeline's ``score_waveforms``: per prompt, the ``n`` waveforms CLAP ranks best among all the
        generated ones (with several prompts diffusers ranks across prompts too; kept as it is)."""
        pipe = self.pipe
        fe = pipe.feature_extractor
        ids, mask = self.clap_ids(prompts, pad_to_max=False)
        resampled = resample(audio.numpy(), int(pipe.vocoder.config.sampling_rate), int(fe.sampling_rate))
        features = fe(list(resampled), return_tensors="pt", sampling_rate=fe.sampling_rate).input_features
        features = features.to(device=self.device, dtype=pipe.text_encoder_2.dtype)
        out = pipe.text_encoder(input_ids=ids, attention_mask=mask, input_features=features)
        logits = out.logits_per_text
        indices = torch.argsort(logits, dim=1, descending=True)[:, :n]
        return torch.index_select(audio, 0, indices.reshape(-1).cpu())

    # -- generation: the family's pipeline with AudioLDM 2's conditioning and re-ranking ---------
    def conditioning(self, prompts: list[str], negative: str, n: int, cfg: bool) -> UNetConditioning:
        """GPT-2's generated embeddings to the UNet's first cross-attention stream, Flan-T5's hidden states
        (with their mask) to the second; the latents take T5's dtype, as in the pipeline."""
        t5, t5_mask, generated = self.prompt_embeddings(prompts, negative, n, cfg)
        return UNetConditioning({"encoder_hidden_states": generated, "encoder_hidden_states_1": t5,
                                 "encoder_attention_mask_1": t5_mask}, t5.dtype)

    def rerank(self, request: GenerationRequest, audio: torch.Tensor) -> torch.Tensor:
        """:meth:`score_waveforms` when ``waveforms_per_prompt > 1``, as the pipeline does;
        ``request.extra["score_waveforms"] = False`` skips it."""
        n = request.waveforms_per_prompt
        if n > 1 and request.extra.get("score_waveforms", True):
            return self.score_waveforms(request.prompts, audio, n)
        return audio

    # -- counting -------------------------------------------------------------------------------
    def _study_t5_length(self) -> int:
        return t5_token_count(STUDY_PROMPT)

    def denoiser_call(self, duration_s: float = 10.0, batch: int = 1) -> ModuleCall:
        """One UNet step: latents (2B, 8, 250, 16) at 10 s, 8 GPT-2 tokens, the study prompt's T5 tokens."""
        unet = self.pipe.unet
        dims = unet.config.cross_attention_dim[0]
        sample = torch.zeros(self.latent_shape(duration_s, 2 * batch), device=self.device, dtype=self.dtype)
        length = self._study_t5_length()
        kwargs = {
            "encoder_hidden_states": torch.zeros((2 * batch, self.lm_generation.max_new_tokens, dims[1]),
                                                 device=self.device, dtype=self.dtype),
            "encoder_hidden_states_1": torch.zeros((2 * batch, length, dims[2]), device=self.device,
                                                   dtype=self.dtype),
            "encoder_attention_mask_1": torch.ones((2 * batch, length), device=self.device, dtype=torch.long),
        }
        t = torch.tensor(999, device=self.device)
        return ModuleCall("unet", unet, (sample, t), unet_call_kwargs(kwargs))

    def per_generation_calls(self, duration_s: float = 10.0, batch: int = 1) -> list[ModuleCall]:
        """CLAP text, Flan-T5, projection and GPT-2 generation for prompt + negative (the study prompt), VAE
        decode and vocoder for ``batch`` clips, and CLAP re-ranking when ``batch > 1``.

        T5 and GPT-2 get no padding mask: the compute is the same, and without one they run on meta
        tensors directly (a mask makes transformers inspect its values).
        """
        p = self.pipe
        dev, dt = self.device, self.dtype
        texts = [STUDY_PROMPT, self.defaults.negative_prompt or ""]
        ids, mask = self.clap_ids(texts)
        length = self._study_t5_length()
        t5_ids, _ = t5_synthetic_ids(texts, p.text_encoder_2.config.vocab_size, length)
        clap_dim = p.projection_model.config.text_encoder_dim
        t5_dim = p.projection_model.config.text_encoder_1_dim
        lm_dim = p.language_model.config.n_embd
        calls = [
            ModuleCall("text_encoder", p.text_encoder, (ids,), {"attention_mask": mask},
                       method="get_text_features"),
            ModuleCall("text_encoder_2", p.text_encoder_2, (t5_ids.to(dev),)),
            ModuleCall("projection_model", p.projection_model, (), {
                "hidden_states": torch.zeros((2, 1, clap_dim), device=dev, dtype=dt),
                "hidden_states_1": torch.zeros((2, length, t5_dim), device=dev, dtype=dt),
                "attention_mask": torch.ones((2, 1), device=dev, dtype=torch.long),
                "attention_mask_1": torch.ones((2, length), device=dev, dtype=torch.long)}),
            # [SOS, clap, EOS] + [SOS, t5 x length, EOS]
            ModuleCall("language_model", self.lm_generation,
                       (torch.zeros((2, length + 5, lm_dim), device=dev, dtype=dt),)),
            *self.decoder_calls(duration_s, batch),
        ]
        if batch > 1:
            fe = p.feature_extractor
            score_ids, score_mask = self.clap_ids([STUDY_PROMPT], pad_to_max=False)
            frames = int(fe.nb_max_samples) // int(fe.hop_length) + 1  # 1001 mel frames of 10 s at 48 kHz
            features = torch.zeros((batch, 1, frames, int(fe.feature_size)), device=dev, dtype=dt)
            calls.append(ModuleCall("clap_scoring", p.text_encoder, (), {
                "input_ids": score_ids, "attention_mask": score_mask, "input_features": features}))
        return calls

    def describe_extra(self) -> dict[str, object]:
        return {**super().describe_extra(), "t5_tokens": self._study_t5_length(),
                "gpt2_generated_tokens": self.lm_generation.max_new_tokens, "t5_prompt": STUDY_PROMPT}
