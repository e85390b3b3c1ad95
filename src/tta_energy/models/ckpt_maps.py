"""Original checkpoint key names -> this project's module names, one table per model.

The Make-An-Audio checkpoints are PyTorch Lightning files (``{"state_dict": {...}}``) of the original
``LatentDiffusion`` module: ``model.diffusion_model.*`` (denoiser), ``first_stage_model.*`` (VAE),
``cond_stage_model.*`` (text encoders) plus the noise-schedule buffers and ``scale_factor``. The vocoder is a
separate BigVGAN file whose ``"generator"`` entry is the generator's state dict (weight-normed convs stored as
``weight_g``/``weight_v``).

A table is a list of :class:`Rule` s: an original module prefix, the project module it becomes and, where
the sub-module names differ, a leaf map (original sub-path -> project sub-path, with an optional tensor
transform). The same rules convert both ways (:meth:`KeyTable.to_project`, :meth:`KeyTable.to_original`), so
a replica can be saved in the original layout and a real checkpoint loaded strictly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

# --- table machinery -------------------------------------------------------------------------------------

#: transform of a weight whose original is a 1x1 convolution and whose project module is a Linear layer;
#: the number is the convolution's spatial rank (2 for Conv2d, 1 for Conv1d).
CONV2D_1X1 = 2
CONV1D_1X1 = 1


@dataclass(frozen=True)
class Leaf:
    name: str
    conv_rank: int | None = None  # CONV2D_1X1 / CONV1D_1X1: reshape the ``weight`` between conv and linear


@dataclass(frozen=True)
class Rule:
    original: str
    project: str
    leaves: Mapping[str, str | Leaf] | None = None  # None: the same sub-module names on both sides
    weight_norm: bool = False  # the original module stores weight_g / weight_v (folded into ``weight`` here)

    def leaf_items(self) -> list[tuple[str, Leaf]]:
        return [(k, v if isinstance(v, Leaf) else Leaf(v)) for k, v in (self.leaves or {}).items()]


@dataclass
class Conversion:
    """Result of :meth:`KeyTable.to_project`."""

    state_dict: dict[str, torch.Tensor]
    extras: dict[str, torch.Tensor]  # known non-module entries (schedule buffers, scale_factor)
    unexpected: list[str]  # original keys that no rule maps


def _sub(rest: str, leaves: list[tuple[str, Leaf]], inverse: bool) -> tuple[str, Leaf] | None:
    """Rename the sub-path ``rest`` by the longest matching leaf (``None``: no leaf matches)."""
    best: tuple[str, str, Leaf] | None = None
    for orig, leaf in leaves:
        src, dst = (leaf.name, orig) if inverse else (orig, leaf.name)
        if (rest == src or rest.startswith(src + ".")) and (best is None or len(src) > len(best[0])):
            best = (src, dst, leaf)
    if best is None:
        return None
    src, dst, leaf = best
    return dst + rest[len(src) :], leaf


def _join(prefix: str, rest: str) -> str:
    return f"{prefix}.{rest}" if rest else prefix


def _reshape(key: str, tensor: torch.Tensor, leaf: Leaf, to_original: bool) -> torch.Tensor:
    if leaf.conv_rank is None or not key.endswith("weight"):
        return tensor
    if to_original:
        return tensor.reshape(*tensor.shape, *([1] * leaf.conv_rank))
    return tensor.reshape(tensor.shape[0], tensor.shape[1])


@dataclass
class KeyTable:
    """One model's rules plus the original non-module entries it knows."""

    model: str
    rules: list[Rule]
    extra_keys: tuple[str, ...] = ()  # original entries that are not module weights (kept aside on load)
    ignored_patterns: tuple[str, ...] = ()  # regexes of legacy entries accepted and dropped on load
    _by_original: dict[str, Rule] = field(init=False, repr=False)
    _by_project: dict[str, Rule] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_original, self._by_project = {}, {}
        for rule in self.rules:
            for index, key in ((self._by_original, rule.original), (self._by_project, rule.project)):
                if key in index:
                    raise ValueError(f"{self.model} table: two rules for {key!r}")
                index[key] = rule

    @staticmethod
    def _find(index: dict[str, Rule], key: str) -> tuple[Rule, str] | None:
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            rule = index.get(".".join(parts[:n]))
            if rule is not None:
                return rule, ".".join(parts[n:])
        return None

    def _rename(self, key: str, inverse: bool) -> tuple[str, Rule, Leaf] | None:
        found = self._find(self._by_project if inverse else self._by_original, key)
        if found is None:
            return None
        rule, rest = found
        leaf = Leaf("")
        if rule.leaves is not None:
            renamed = _sub(rest, rule.leaf_items(), inverse)
            if renamed is None:
                return None
            rest, leaf = renamed
        return _join(rule.original if inverse else rule.project, rest), rule, leaf

    def project_key(self, original_key: str) -> str | None:
        renamed = self._rename(original_key, inverse=False)
        return None if renamed is None else renamed[0]

    def original_key(self, project_key: str) -> str | None:
        renamed = self._rename(project_key, inverse=True)
        return None if renamed is None else renamed[0]

    def to_project(self, original: Mapping[str, torch.Tensor]) -> Conversion:
        """Original-named entries -> project-named state dict (+ extras, + keys nothing maps)."""
        folded = _fold_weight_norm(original, [r.original for r in self.rules if r.weight_norm])
        out: dict[str, torch.Tensor] = {}
        extras: dict[str, torch.Tensor] = {}
        unexpected: list[str] = []
        for key, tensor in folded.items():
            if key in self.extra_keys:
                extras[key] = tensor
                continue
            if any(re.fullmatch(p, key) for p in self.ignored_patterns):
                continue
            renamed = self._rename(key, inverse=False)
            if renamed is None:
                unexpected.append(key)
                continue
            new_key, _, leaf = renamed
            out[new_key] = _reshape(new_key, tensor, leaf, to_original=False)
        return Conversion(out, extras, unexpected)

    def to_original(
        self, project: Mapping[str, torch.Tensor], extras: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Project-named state dict -> original-named entries (raises on a key no rule maps)."""
        out: dict[str, torch.Tensor] = {}
        unmapped = []
        for key, tensor in project.items():
            renamed = self._rename(key, inverse=True)
            if renamed is None:
                unmapped.append(key)
                continue
            new_key, _, leaf = renamed
            out[new_key] = _reshape(key, tensor, leaf, to_original=True)
        if unmapped:
            raise KeyError(
                f"{self.model} table maps no original name for {len(unmapped)} keys: "
                f"{', '.join(unmapped[:5])}"
            )
        out = _unfold_weight_norm(out, [r.original for r in self.rules if r.weight_norm])
        out.update(extras or {})
        return out


def _fold_weight_norm(sd: Mapping[str, torch.Tensor], modules: Iterable[str]) -> dict[str, torch.Tensor]:
    """weight_g/weight_v -> weight (``torch.nn.utils.weight_norm`` with its default dim 0)."""
    out = dict(sd)
    for m in modules:
        g, v = out.get(f"{m}.weight_g"), out.get(f"{m}.weight_v")
        if g is None or v is None:
            continue  # left for the missing/unexpected report
        del out[f"{m}.weight_g"], out[f"{m}.weight_v"]
        # weight_norm's formula, written out so that unfolding then folding gives the weight back bit for bit
        out[f"{m}.weight"] = v * (g / torch.norm_except_dim(v, 2, 0))
    return out


def _unfold_weight_norm(sd: Mapping[str, torch.Tensor], modules: Iterable[str]) -> dict[str, torch.Tensor]:
    """weight -> (weight_g = per-output-slice norm, weight_v = weight): the exact inverse of the fold."""
    out = dict(sd)
    for m in modules:
        w = out.pop(f"{m}.weight")
        out[f"{m}.weight_g"] = torch.norm_except_dim(w, 2, 0)
        out[f"{m}.weight_v"] = w
    return out


def describe_mismatch(
    model: str,
    source: str,
    missing: list[str],
    unexpected: list[str],
    wrong_shapes: list[str],
    shown: int = 3,
) -> str:
    """One line naming a few missing/unexpected/mis-shaped keys and their counts."""
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrongly shaped", wrong_shapes)):
        if keys:
            more = ", ..." if len(keys) > shown else ""
            parts.append(f"{len(keys)} {label} keys ({', '.join(keys[:shown])}{more})")
    return f"{source} does not fit {model}: " + "; ".join(parts)


# --- shared leaf maps ---------------------------------------------------------------------------------------

#: LDM ``openaimodel.ResBlock`` -> diffusers ``ResnetBlock2D``
LDM_RESBLOCK = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
#: LDM autoencoder ``ResnetBlock`` (2D or 1D) -> diffusers ``ResnetBlock2D`` / ``vae1d.ResnetBlock1D``
LDM_VAE_RESBLOCK = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "nin_shortcut": "conv_shortcut",
}


def _ldm_vae_attention(conv_rank: int, prefix: str = "") -> dict[str, Leaf]:
    """LDM ``AttnBlock`` (1x1-conv q/k/v/proj_out) -> diffusers ``Attention`` (Linear layers)."""
    return {
        "norm": Leaf(prefix + "group_norm"),
        "q": Leaf(prefix + "to_q", conv_rank),
        "k": Leaf(prefix + "to_k", conv_rank),
        "v": Leaf(prefix + "to_v", conv_rank),
        "proj_out": Leaf(prefix + "to_out.0", conv_rank),
    }


#: MS-CLAP ``Projection`` -> :class:`~.blocks.msclap.ClapProjection`
CLAP_PROJECTION = {"linear1": "linear_in", "linear2": "linear_hidden", "layer_norm": "norm"}

#: LatentDiffusion's noise-schedule buffers (``DDPM.register_schedule``) and the latent scale.
LDM_SCHEDULE_BUFFERS = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
SCALE_FACTOR = "scale_factor"
#: entries older library versions saved that carry no weights: BERT's id buffers (transformers < 4.31)
#: and LDM's ``lvlb_weights`` (persistent in older latent-diffusion code)
LEGACY_BUFFERS = (
    r"cond_stage_model\.caption_encoder\.base\.embeddings\.(position_ids|token_type_ids)",
    r"lvlb_weights",
)


# --- Make-An-Audio ------------------------------------------------------------------------------------------


def _ldm_unet_rules(src: str, dst: str, unet: Mapping[str, Any]) -> list[Rule]:
    """LDM ``openaimodel.UNetModel`` (input/middle/output_blocks) -> diffusers ``UNet2DConditionModel``."""
    levels = len(unet["block_out_channels"])
    layers = int(unet["layers_per_block"])
    down_attn = [t.startswith("CrossAttn") for t in unet["down_block_types"]]
    up_attn = [t.startswith("CrossAttn") for t in unet["up_block_types"]]
    rules = [
        Rule(f"{src}.time_embed.0", f"{dst}.time_embedding.linear_1"),
        Rule(f"{src}.time_embed.2", f"{dst}.time_embedding.linear_2"),
        Rule(f"{src}.input_blocks.0.0", f"{dst}.conv_in"),
    ]
    block = 1
    for level in range(levels):
        for j in range(layers):
            rules.append(
                Rule(f"{src}.input_blocks.{block}.0", f"{dst}.down_blocks.{level}.resnets.{j}", LDM_RESBLOCK)
            )
            if down_attn[level]:
                rules.append(
                    Rule(f"{src}.input_blocks.{block}.1", f"{dst}.down_blocks.{level}.attentions.{j}")
                )
            block += 1
        if level != levels - 1:
            rules.append(
                Rule(f"{src}.input_blocks.{block}.0.op", f"{dst}.down_blocks.{level}.downsamplers.0.conv")
            )
            block += 1
    rules += [
        Rule(f"{src}.middle_block.0", f"{dst}.mid_block.resnets.0", LDM_RESBLOCK),
        Rule(f"{src}.middle_block.1", f"{dst}.mid_block.attentions.0"),
        Rule(f"{src}.middle_block.2", f"{dst}.mid_block.resnets.1", LDM_RESBLOCK),
    ]
    block = 0
    for up in range(levels):  # deepest level first, as both libraries order their up path
        for j in range(layers + 1):
            rules.append(
                Rule(f"{src}.output_blocks.{block}.0", f"{dst}.up_blocks.{up}.resnets.{j}", LDM_RESBLOCK)
            )
            if up_attn[up]:
                rules.append(Rule(f"{src}.output_blocks.{block}.1", f"{dst}.up_blocks.{up}.attentions.{j}"))
            if up != levels - 1 and j == layers:
                index = 2 if up_attn[up] else 1
                rules.append(
                    Rule(
                        f"{src}.output_blocks.{block}.{index}.conv", f"{dst}.up_blocks.{up}.upsamplers.0.conv"
                    )
                )
            block += 1
    rules += [Rule(f"{src}.out.0", f"{dst}.conv_norm_out"), Rule(f"{src}.out.2", f"{dst}.conv_out")]
    return rules


def _ldm_vae_rules(src: str, dst: str, vae: Mapping[str, Any]) -> list[Rule]:
    """LDM ``autoencoder.AutoencoderKL`` (down.{i}.block.{j}, mid.attn_1, up.{i}...) -> diffusers."""
    levels = len(vae["block_out_channels"])
    layers = int(vae["layers_per_block"])
    down_attn = [t.startswith("Attn") for t in vae["down_block_types"]]
    up_attn = [t.startswith("Attn") for t in vae["up_block_types"]]
    attention = _ldm_vae_attention(CONV2D_1X1)
    rules = [Rule(f"{src}.encoder.conv_in", f"{dst}.encoder.conv_in")]
    for i in range(levels):
        for j in range(layers):
            rules.append(
                Rule(
                    f"{src}.encoder.down.{i}.block.{j}",
                    f"{dst}.encoder.down_blocks.{i}.resnets.{j}",
                    LDM_VAE_RESBLOCK,
                )
            )
            if down_attn[i]:
                rules.append(
                    Rule(
                        f"{src}.encoder.down.{i}.attn.{j}",
                        f"{dst}.encoder.down_blocks.{i}.attentions.{j}",
                        attention,
                    )
                )
        if i != levels - 1:
            rules.append(
                Rule(
                    f"{src}.encoder.down.{i}.downsample.conv",
                    f"{dst}.encoder.down_blocks.{i}.downsamplers.0.conv",
                )
            )
    for part in ("encoder", "decoder"):
        rules += [
            Rule(f"{src}.{part}.mid.block_1", f"{dst}.{part}.mid_block.resnets.0", LDM_VAE_RESBLOCK),
            Rule(f"{src}.{part}.mid.attn_1", f"{dst}.{part}.mid_block.attentions.0", attention),
            Rule(f"{src}.{part}.mid.block_2", f"{dst}.{part}.mid_block.resnets.1", LDM_VAE_RESBLOCK),
            Rule(f"{src}.{part}.norm_out", f"{dst}.{part}.conv_norm_out"),
            Rule(f"{src}.{part}.conv_out", f"{dst}.{part}.conv_out"),
        ]
    rules.append(Rule(f"{src}.decoder.conv_in", f"{dst}.decoder.conv_in"))
    for i in range(levels):  # LDM indexes decoder levels shallow-first, diffusers deepest-first
        up = levels - 1 - i
        for j in range(layers + 1):
            rules.append(
                Rule(
                    f"{src}.decoder.up.{i}.block.{j}",
                    f"{dst}.decoder.up_blocks.{up}.resnets.{j}",
                    LDM_VAE_RESBLOCK,
                )
            )
            if up_attn[up]:
                rules.append(
                    Rule(
                        f"{src}.decoder.up.{i}.attn.{j}",
                        f"{dst}.decoder.up_blocks.{up}.attentions.{j}",
                        attention,
                    )
                )
        if i != 0:
            rules.append(
                Rule(f"{src}.decoder.up.{i}.upsample.conv", f"{dst}.decoder.up_blocks.{up}.upsamplers.0.conv")
            )
    rules += [
        Rule(f"{src}.quant_conv", f"{dst}.quant_conv"),
        Rule(f"{src}.post_quant_conv", f"{dst}.post_quant_conv"),
    ]
    return rules


def _clap_rules() -> list[Rule]:
    return [
        Rule("cond_stage_model.caption_encoder.base", "text_encoder.bert"),
        Rule("cond_stage_model.caption_encoder.projection", "text_encoder.projection", CLAP_PROJECTION),
    ]


def make_an_audio_table(unet: Mapping[str, Any], vae: Mapping[str, Any]) -> KeyTable:
    """``maa1_full.ckpt`` ``state_dict`` <-> {text_encoder, unet, vae} of :mod:`.make_an_audio`.

    ``unet``/``vae`` are the diffusers configs (they fix how many blocks there are).
    """
    rules = _ldm_unet_rules("model.diffusion_model", "unet", unet)
    rules += _ldm_vae_rules("first_stage_model", "vae", vae)
    rules += _clap_rules()
    return KeyTable("make-an-audio", rules, LDM_SCHEDULE_BUFFERS + (SCALE_FACTOR,), LEGACY_BUFFERS)


# --- Make-An-Audio 2 ----------------------------------------------------------------------------------------

_DIT_BLOCK = {
    "norm": "norm",
    "proj_in": "proj_in",
    "proj_out": "proj_out",
    "transformer_blocks.0.norm1": "norm1",
    "transformer_blocks.0.attn1": "attn1",
    "transformer_blocks.0.norm2": "norm2",
    "transformer_blocks.0.attn2": "attn2",
    "transformer_blocks.0.norm3": "norm3",
    "transformer_blocks.0.ff.net.0.proj": "ff.proj_in",
    "transformer_blocks.0.ff.net.2": "ff.proj_out",
}
_CONDITION_EMBEDDER = {"mlp.0": "linear_1", "mlp.2": "linear_2", "mlp.3": "norm"}


def _concat_dit_rules(src: str, dst: str, depth: int) -> list[Rule]:
    rules = [
        Rule(f"{src}.t_embedder.mlp.0", f"{dst}.time_embedding.linear_1"),
        Rule(f"{src}.t_embedder.mlp.2", f"{dst}.time_embedding.linear_2"),
        Rule(f"{src}.c1_embedder", f"{dst}.clap_embedder", _CONDITION_EMBEDDER),
        Rule(f"{src}.c2_embedder", f"{dst}.t5_embedder", _CONDITION_EMBEDDER),
        Rule(f"{src}.proj_in", f"{dst}.latent_in"),
        Rule(f"{src}.pos_emb.weight", f"{dst}.position_table"),
        Rule(f"{src}.final_layer.norm_final", f"{dst}.norm_out"),
        Rule(f"{src}.final_layer.conv1d", f"{dst}.conv_out"),
    ]
    rules += [Rule(f"{src}.blocks.{i}", f"{dst}.blocks.{i}", _DIT_BLOCK) for i in range(depth)]
    return rules


def _vae1d_rules(
    src: str,
    dst: str,
    levels: int,
    num_res_blocks: int,
    attn_layers: Iterable[int],
    down_layers: Iterable[int],
) -> list[Rule]:
    """Make-An-Audio 2 ``autoencoder1d`` -> :class:`~.blocks.vae1d.AutoencoderKL1D`."""
    attn, down = set(attn_layers), set(down_layers)
    attention = _ldm_vae_attention(CONV1D_1X1, prefix="attention.")
    rules = [
        Rule(f"{src}.encoder.conv_in", f"{dst}.encoder.conv_in"),
        Rule(f"{src}.decoder.conv_in", f"{dst}.decoder.conv_in"),
        Rule(f"{src}.quant_conv", f"{dst}.quant_conv"),
        Rule(f"{src}.post_quant_conv", f"{dst}.post_quant_conv"),
    ]
    for i in range(levels):
        for j in range(num_res_blocks):
            rules.append(
                Rule(
                    f"{src}.encoder.down.{i}.block.{j}",
                    f"{dst}.encoder.down_blocks.{i}.resnets.{j}",
                    LDM_VAE_RESBLOCK,
                )
            )
            if i in attn:
                rules.append(
                    Rule(
                        f"{src}.encoder.down.{i}.attn.{j}",
                        f"{dst}.encoder.down_blocks.{i}.attentions.{j}",
                        attention,
                    )
                )
        if i in down:
            rules.append(
                Rule(
                    f"{src}.encoder.down.{i}.downsample.conv",
                    f"{dst}.encoder.down_blocks.{i}.downsampler.conv",
                )
            )
        up = levels - 1 - i
        for j in range(num_res_blocks + 1):
            rules.append(
                Rule(
                    f"{src}.decoder.up.{i}.block.{j}",
                    f"{dst}.decoder.up_blocks.{up}.resnets.{j}",
                    LDM_VAE_RESBLOCK,
                )
            )
            if i in attn:
                rules.append(
                    Rule(
                        f"{src}.decoder.up.{i}.attn.{j}",
                        f"{dst}.decoder.up_blocks.{up}.attentions.{j}",
                        attention,
                    )
                )
        if i - 1 in down:
            rules.append(
                Rule(f"{src}.decoder.up.{i}.upsample.conv", f"{dst}.decoder.up_blocks.{up}.upsampler.conv")
            )
    for part in ("encoder", "decoder"):
        rules += [
            Rule(f"{src}.{part}.mid.block_1", f"{dst}.{part}.mid_block.resnet_1", LDM_VAE_RESBLOCK),
            Rule(f"{src}.{part}.mid.attn_1", f"{dst}.{part}.mid_block.attention", attention),
            Rule(f"{src}.{part}.mid.block_2", f"{dst}.{part}.mid_block.resnet_2", LDM_VAE_RESBLOCK),
            Rule(f"{src}.{part}.norm_out", f"{dst}.{part}.conv_norm_out"),
            Rule(f"{src}.{part}.conv_out", f"{dst}.{part}.conv_out"),
        ]
    return rules


def make_an_audio_2_table(dit_depth: int, vae_ddconfig: Mapping[str, Any]) -> KeyTable:
    """``maa2.ckpt`` ``state_dict`` <-> {text_encoder, t5_encoder, transformer, vae} of MAA 2."""
    rules = _concat_dit_rules("model.diffusion_model", "transformer", dit_depth)
    rules += _vae1d_rules(
        "first_stage_model",
        "vae",
        len(vae_ddconfig["ch_mult"]),
        int(vae_ddconfig["num_res_blocks"]),
        vae_ddconfig.get("attn_layers", ()),
        vae_ddconfig.get("down_layers", ()),
    )
    rules += _clap_rules()
    rules.append(Rule("cond_stage_model.t5_transformer", "t5_encoder"))
    return KeyTable("make-an-audio-2", rules, LDM_SCHEDULE_BUFFERS + (SCALE_FACTOR,), LEGACY_BUFFERS)


# --- BigVGAN vocoder (both models) --------------------------------------------------------------------------

_ANTI_ALIASED_ACTIVATION = {"act": "snake", "upsample": "upsample", "downsample.lowpass": "downsample"}


def bigvgan_table(num_stages: int, num_kernels: int, num_dilations: int) -> KeyTable:
    """BigVGAN v1 generator (``best_netG.pt["generator"]``) <-> :class:`~.blocks.bigvgan.BigVGANGenerator`.

    Original AMPBlock1 ``r`` of stage ``i`` is ``resblocks[i * num_kernels + r]``; its ``activations[2j]`` and
    ``activations[2j + 1]`` precede ``convs1[j]`` and ``convs2[j]``.
    """
    rules = [
        Rule("conv_pre", "conv_pre", weight_norm=True),
        Rule("conv_post", "conv_out", weight_norm=True),
        Rule("activation_post", "act_out", _ANTI_ALIASED_ACTIVATION),
    ]
    for i in range(num_stages):
        rules.append(Rule(f"ups.{i}.0", f"stages.{i}.upsampler", weight_norm=True))
        for r in range(num_kernels):
            src, dst = f"resblocks.{i * num_kernels + r}", f"stages.{i}.resblocks.{r}.layers"
            for j in range(num_dilations):
                rules += [
                    Rule(f"{src}.convs1.{j}", f"{dst}.{j}.dilated_conv", weight_norm=True),
                    Rule(f"{src}.convs2.{j}", f"{dst}.{j}.conv", weight_norm=True),
                    Rule(f"{src}.activations.{2 * j}", f"{dst}.{j}.act1", _ANTI_ALIASED_ACTIVATION),
                    Rule(f"{src}.activations.{2 * j + 1}", f"{dst}.{j}.act2", _ANTI_ALIASED_ACTIVATION),
                ]
    return KeyTable("BigVGAN", rules)
