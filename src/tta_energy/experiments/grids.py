"""The sweeps as data: what each experiment varies, its defaults, and the configurations it expands to.

The study's three experiments (arXiv 2505.07615: steps, batch, quality) and three new ones:

* ``steps``: denoising steps {10, 25, 50, 100, 150, 200}, one 10 s waveform, 5 repeats;
* ``batch``: 10 clips per repeat at 100 steps, made as 10 calls of 1, 5 of 2, 2 of 5 or 1 of 10 waveforms of
  one prompt (the study's "batch"), plus one call of 10 *distinct* prompts (grid token ``p10``), 5 repeats;
* ``quality``: every caption of a caption file x every step count, one pass, the audio saved for the metrics;
* ``duration``: 2.5, 5, 10, 20 s where the model allows them, 100 steps;
* ``guidance``: classifier-free guidance at the model's default scale vs off (scale 1: the denoiser batch
  halves);
* ``precision``: float32, float16, bfloat16 weights and activations, 100 steps.

A :class:`Config` is one generation call; ``config_id`` is a stable hash of everything that defines it, so a
re-run of the same command recognises what is already measured.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tta_energy.errors import TtaError, no_empty_item, positive_number
from tta_energy.models import catalogue
from tta_energy.precision import DTYPE_NAMES
from tta_energy.quality.clap_score import BUNDLED_CAPTIONS, bundled_captions, read_captions
from tta_energy.study import CLIPS_PER_REPEAT, STUDY_DURATION_S, STUDY_PROMPT, STUDY_REPEATS, STUDY_STEPS

if TYPE_CHECKING:
    from tta_energy.models.base import GenerationRequest

#: the fixed prompt of the study's steps and batch experiments (arXiv 2505.07615)
#: a grid value's type
Number = TypeVar("Number", int, float)


class SweepError(TtaError):
    """A sweep that cannot run as asked (bad grid, bad caption file, ...)."""


@dataclass(frozen=True)
class ExperimentSpec:
    """One experiment: the axis it varies, its default grid and repeats, and the fixed settings."""

    name: str
    axis: str  # what the grid values mean
    grid: tuple[str, ...]  # default grid, as command-line tokens
    repeats: int
    steps: int | None  # steps of every configuration when the axis is not steps
    description: str
    columns: tuple[str, ...]  # the run-table columns that tell its cells apart (a campaign's cell)
    in_study: bool  # one of the study's experiments (else a sweep beyond it, of the one column it varies)


EXPERIMENTS: dict[str, ExperimentSpec] = {
    "steps": ExperimentSpec("steps", "denoising steps", ("10", "25", "50", "100", "150", "200"),
                            STUDY_REPEATS, None, "the study's inference-steps experiment", ("steps",), True),
    "batch": ExperimentSpec("batch", "waveforms per prompt (pN: N distinct prompts)",
                            ("1", "2", "5", "10", "p10"), STUDY_REPEATS, STUDY_STEPS,
                            "the study's batch experiment: 10 clips per repeat, + 10 distinct prompts",
                            ("n_prompts", "waveforms_per_prompt"), True),
    "quality": ExperimentSpec("quality", "denoising steps", ("10", "25", "50", "100", "150", "200"), 1, None,
                              "the study's quality experiment: caption file x steps, audio saved",
                              ("steps", "dataset"), True),
    "duration": ExperimentSpec("duration", "audio duration, s", ("2.5", "5", "10", "20"), STUDY_REPEATS,
                               STUDY_STEPS, "new: audio duration where the model allows it", ("duration_s",),
                               False),
    "guidance": ExperimentSpec("guidance", "guidance scale (default: the model's; 1: off)", ("default", "1"),
                               STUDY_REPEATS, STUDY_STEPS, "new: classifier-free guidance on vs off",
                               ("guidance_scale",), False),
    "precision": ExperimentSpec("precision", "dtype", DTYPE_NAMES, STUDY_REPEATS, STUDY_STEPS,
                                "new: numeric precision of weights and activations", ("dtype",), False),
}


_ALL = frozenset(EXPERIMENTS)
#: ``sweep`` options that only some experiments use: option -> (the experiments that use it, why the others
#: do not). Written for none of the experiments run, the option is refused (:func:`check_options_used`)
#: rather than silently ignored.
OPTION_USERS: dict[str, tuple[frozenset[str], str]] = {
    "--steps": (_ALL - {"steps", "quality"}, "the grid sets it"),
    "--duration-s": (_ALL - {"duration"}, "the grid sets it"),
    "--dtype": (_ALL - {"precision"}, "the grid sets it"),
    "--prompt": (_ALL - {"quality"}, "its prompts are the caption files'"),
    **{option: (frozenset({"quality"}), "it applies to --experiment quality only")
       for option in ("--captions", "--caption-limit", "--audio-dir", "--save-audio", "--no-save-audio")},
}


def check_options_used(given: Sequence[str], experiments: Sequence[str]) -> None:
    """Refuse an option of ``given`` (those the user wrote) that none of ``experiments`` uses
    (:data:`OPTION_USERS`): a run that ignores it would measure something else than asked."""
    for option in given:
        users, why = OPTION_USERS[option]
        if not users & set(experiments):
            if why == "the grid sets it" and len(experiments) > 1:
                why = "their grids set it"
            raise SweepError(f"{option} has no effect with --experiment {','.join(experiments)} ({why})")


@dataclass(frozen=True)
class Config:
    """One generation call of a sweep (what is measured once per repeat)."""

    experiment: str
    model: str
    steps: int
    prompts: tuple[str, ...]
    waveforms_per_prompt: int = 1
    duration_s: float | None = None  # None: the model's default
    guidance_scale: float | None = None  # None: the model's default
    dtype: str | None = None  # None: the model's default (the study's)
    seed: int = 0
    call_index: int = 0  # batch: which of the 10/b calls of a repeat
    dataset: str = ""  # quality: caption set
    caption_id: str = ""  # quality: file_name of the caption
    extra: tuple[tuple[str, object], ...] = field(default_factory=tuple)

    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @property
    def n_clips(self) -> int:
        return self.n_prompts * self.waveforms_per_prompt

    def cost(self, default_duration_s: float = STUDY_DURATION_S) -> float:
        """Relative cost for balancing shards: steps x clips x seconds, halved without guidance."""
        duration = self.duration_s if self.duration_s is not None else default_duration_s
        off = self.guidance_scale is not None and not catalogue.runs_guidance(self.model, self.guidance_scale)
        cfg = 0.5 if off else 1.0
        return float(self.steps * self.n_clips * max(duration, 1.0) * cfg) + 1.0

    @property
    def label(self) -> str:
        """The configuration along its experiment's axis, the experiment named once (progress, notes)."""
        guidance = "default" if self.guidance_scale is None else self.guidance_scale
        duration = "default" if self.duration_s is None else f"{self.duration_s} s"
        return {
            "steps": f"steps {self.steps}",
            "quality": f"quality {self.dataset} steps {self.steps}",
            "duration": f"duration {duration}",
            "guidance": f"guidance {guidance}",
            "precision": f"precision {self.dtype or 'default'}",
            "batch": f"batch {self.n_prompts} prompt(s) x {self.waveforms_per_prompt}",
        }.get(self.experiment, self.experiment)

    def request(self) -> GenerationRequest:
        """The generation call this configuration makes (None fields: the model's defaults)."""
        from tta_energy.models.base import GenerationRequest

        return GenerationRequest(prompts=list(self.prompts), steps=self.steps,
                                 waveforms_per_prompt=self.waveforms_per_prompt, duration_s=self.duration_s,
                                 guidance_scale=self.guidance_scale, seed=self.seed, extra=dict(self.extra))


def config_id(config: Config, *, size: str, weights: str, levers: str, dtype: str) -> str:
    """A stable 16-hex hash of the configuration and of what the model is (size, weights, dtype, the
    canonical lever spec). The spec is hashed under the key ``optimize``, the run table's column, so that
    the ids of older tables stay the same."""
    payload = asdict(config)
    payload["prompts"] = list(config.prompts)
    payload["extra"] = [list(kv) for kv in config.extra]
    payload.update(size=size, weights=weights, optimize=levers, dtype=dtype)
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --- prompts ------------------------------------------------------------------------------------------------
# Prompts are plain text for every model. Make-An-Audio 2 needs a structured caption: its adapter applies the
# study's rule (the hand-written caption for STUDY_PROMPT, ``<caption.lower() & all>`` otherwise) unless the
# request's ``extra["struct_caption"]`` says otherwise.


@dataclass(frozen=True)
class CaptionSet:
    name: str  # dataset name: audiocaps, clotho, or the file stem
    path: Path
    rows: tuple[tuple[str, str], ...]  # (file_name, caption)


def load_captions(spec: str | Path, limit: int | None = None) -> CaptionSet:
    """A caption file in the study's format; ``audiocaps`` / ``clotho`` name the bundled ones."""
    text = str(spec)
    path = bundled_captions(text) or Path(text)
    if not path.exists():
        raise SweepError(f"caption file {path} does not exist (or use one of {', '.join(BUNDLED_CAPTIONS)})")
    df = read_captions(path)  # the one reader of the format (score reads the same files)
    if limit is not None:
        if limit < 1:
            raise SweepError(f"--caption-limit must be >= 1, got {limit}")
        df = df.head(limit)
    name = path.stem.removesuffix("_captions")
    return CaptionSet(name, path, tuple(zip(df["file_name"], df["caption"], strict=True)))


def distinct_prompts(n: int) -> tuple[str, ...]:
    """``n`` different real prompts for the distinct-prompt batch: the first AudioCaps captions."""
    rows = load_captions("audiocaps", limit=n).rows
    if len(rows) < n:
        raise SweepError(f"only {len(rows)} bundled captions for a batch of {n} distinct prompts")
    return tuple(caption for _, caption in rows)


# --- grids --------------------------------------------------------------------------------------------------
@dataclass
class GridRequest:
    """What the user asked for; None everywhere means the experiment's defaults."""

    experiment: str
    model: str
    grid: Sequence[str] | None = None
    steps: int | None = None  # fixed steps for non-steps axes
    prompt: str | None = None
    duration_s: float | None = None  # fixed duration for non-duration axes (None: the model's default)
    dtype: str | None = None  # fixed dtype for non-precision axes
    seed: int = 0
    captions: Sequence[str | Path] = ()
    limit: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


def spec(experiment: str) -> ExperimentSpec:
    if experiment not in EXPERIMENTS:
        raise SweepError(f"unknown experiment {experiment!r}: choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[experiment]


def _parsed(token: str, what: str, kind: type[Number], other: str = "") -> Number:
    """One grid token as ``kind`` (int or float); else one error line naming the value and what it must be
    (``other``: what else the grid takes)."""
    try:
        return kind(token)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise SweepError(f"{what} grid value {token!r} is not {noun}{other}") from None


def _ints(tokens: Sequence[str], what: str) -> list[int]:
    """Grid tokens as integers >= 1 (steps)."""
    values = [_parsed(t, what, int) for t in tokens]
    for v in values:
        if v < 1:
            raise SweepError(f"{what} grid value {v} must be >= 1")
    return values


def _positive(token: str, what: str, *, allow_zero: bool = False, other: str = "") -> float:
    """A grid token as a finite number > 0 (>= 0 with ``allow_zero``): :func:`positive_number`'s rule, so
    that NaN and infinities are named as not finite."""
    return positive_number(_parsed(token, what, float, other), f"{what} grid value", allow_zero=allow_zero,
                           error=SweepError)


def check_distinct(values: Iterable[tuple[str, Hashable]], name: Callable[[Hashable], str],
                   hint: str = "") -> None:
    """Refuse two grid values that mean the same thing: ``values`` pairs each grid token with what it makes
    (a sweep: its parsed value, so ``2`` and ``02`` steps; a campaign: its cell), ``name`` words that.
    The second would measure the first again under another name. One rule for the sweep and the campaign."""
    seen: dict[Hashable, str] = {}
    for token, key in values:
        if key in seen:
            raise SweepError(f"grid values {seen[key]} and {token} make the same {name(key)}: keep one"
                             + (f" ({hint})" if hint else ""))
        seen.setdefault(key, token)


def _distinct(experiment: str, tokens: Sequence[str], values: Sequence[object]) -> None:
    """:func:`check_distinct` for one sweep grid, naming the experiment."""
    axis = "steps" if experiment == "quality" else experiment
    try:
        check_distinct(zip(tokens, values, strict=True), lambda v: f"configuration ({axis} {v})")
    except SweepError as exc:
        raise SweepError(f"{experiment} {exc}") from None


#: the settings a grid is written in: the command line's ``--grid`` (a comma list), a campaign file's ``grid``
#: (a TOML list of strings)
GRID_SETTINGS = ("--grid", "grid")


def grid_as_written(values: Sequence[str], setting: str = "--grid", *, quoted: bool = False) -> str:
    """A grid as ``setting`` (:data:`GRID_SETTINGS`) writes it: ``--grid 10,25`` (``quoted``: ``--grid
    '10,25'``, as the shell takes a list with an empty item) or ``grid = ["10", "25"]``."""
    if setting == "grid":
        return f"grid = [{', '.join(json.dumps(v) for v in values)}]"
    joined = ",".join(values)
    return f"--grid {joined!r}" if quoted else f"--grid {joined}"


def grid_values(grid: Sequence[object], experiment: str, setting: str = "--grid") -> tuple[str, ...]:
    """The values of a grid the user wrote for ``experiment``, stripped. A grid with no value (an empty grid
    never stands for the default one) or with an empty item is refused in one line that writes the grid as
    ``setting`` does (:data:`GRID_SETTINGS`). The one rule of the sweep's and the campaign's grids."""
    values = [str(v).strip() for v in grid]
    if not any(values):
        example = grid_as_written(spec(experiment).grid, setting)
        raise SweepError(f"the {experiment} grid is empty: give values (e.g. {example}) or leave {setting} "
                         "out for that default")
    no_empty_item(values, grid_as_written(values, setting, quoted=True), "values", error=SweepError,
                  fix="" if setting == "--grid" else "remove it, or write a value in it")
    return tuple(values)


def build_configs(req: GridRequest) -> list[Config]:
    """The configurations of one repeat, in grid order."""
    s = spec(req.experiment)
    tokens = grid_values(req.grid, req.experiment) if req.grid is not None else s.grid
    steps = req.steps if req.steps is not None else (s.steps or STUDY_STEPS)
    if steps < 1:
        raise SweepError(f"--steps must be >= 1, got {steps}")
    prompt = req.prompt if req.prompt is not None else STUDY_PROMPT
    if not prompt.strip():
        raise SweepError("--prompt is empty")
    extra = tuple(sorted(req.extra.items()))
    base = Config(experiment=req.experiment, model=req.model, steps=steps, prompts=(prompt,),
                  duration_s=req.duration_s, dtype=req.dtype, seed=req.seed, extra=extra)
    name = req.experiment
    if name == "steps":
        values = _ints(tokens, "steps")
        _distinct(name, tokens, values)
        return [replace(base, steps=v) for v in values]
    if name == "batch":
        return _batch_configs(base, tokens)
    if name == "quality":
        values = _ints(tokens, "steps")
        _distinct(name, tokens, values)
        return _quality_configs(base, values, req)
    if name == "duration":
        durations = [_positive(t, "duration") for t in tokens]
        _distinct(name, tokens, durations)
        return [replace(base, duration_s=v) for v in durations]
    if name == "guidance":
        scales = [None if t.lower() == "default" else _positive(t, "guidance", allow_zero=True,
                                                                   other=" or 'default'")
                  for t in tokens]
        _distinct(name, tokens, ["default" if v is None else v for v in scales])
        return [replace(base, guidance_scale=v) for v in scales]
    if name == "precision":
        from tta_energy.precision import PrecisionError, canonical_dtype

        try:
            names = [canonical_dtype(t) for t in tokens]
        except PrecisionError as exc:
            raise SweepError(str(exc)) from None
        _distinct(name, tokens, names)
        return [replace(base, dtype=v) for v in names]
    raise SweepError(f"no grid rule for experiment {name!r}")  # pragma: no cover - EXPERIMENTS is closed


def _batch_forms() -> str:
    """The batch grid values allowed, for messages: the forms the sweep's help describes."""
    sizes = [n for n in range(1, CLIPS_PER_REPEAT + 1) if CLIPS_PER_REPEAT % n == 0]
    return (f"use B waveforms of the prompt per call or pN (one call of N distinct prompts), B and N one of "
            f"{', '.join(map(str, sizes))} ({CLIPS_PER_REPEAT} clips per repeat in equal calls), e.g. --grid "
            f"{','.join(EXPERIMENTS['batch'].grid)}")


def _batch_configs(base: Config, tokens: Sequence[str]) -> list[Config]:
    """The calls of each batch grid value: ``B`` (B waveforms of one prompt per call) or ``pN`` (N distinct
    prompts, one waveform each), each making :data:`CLIPS_PER_REPEAT` clips per repeat."""
    out = []
    layouts = []
    for t in tokens:
        distinct = t.lower().startswith("p")
        try:
            b = int(t[1:] if distinct else t)
        except ValueError:
            raise SweepError(f"batch grid value {t!r} is not an integer or pN: {_batch_forms()}") from None
        if b < 1 or CLIPS_PER_REPEAT % b:  # also bounds a call: at most CLIPS_PER_REPEAT waveforms
            raise SweepError(f"batch grid value {t!r}: {_batch_forms()}")
        layouts.append((distinct, b))
    _distinct("batch", tokens, [f"{'p' if distinct else ''}{b}" for distinct, b in layouts])
    for distinct, b in layouts:
        if distinct:
            # real, different captions (the first of the bundled AudioCaps file), whatever --prompt says
            prompts = distinct_prompts(b)
            per_call = replace(base, prompts=prompts, waveforms_per_prompt=1)
        else:
            per_call = replace(base, waveforms_per_prompt=b)
        out.extend(replace(per_call, call_index=i) for i in range(CLIPS_PER_REPEAT // b))
    return out


def _quality_configs(base: Config, steps: list[int], req: GridRequest) -> list[Config]:
    sets = [load_captions(c, req.limit) for c in (req.captions or BUNDLED_CAPTIONS)]
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise SweepError(f"two caption files share the dataset name {names}")
    out = []
    for cs in sets:
        for file_name, caption in cs.rows:
            for n in steps:
                out.append(replace(base, steps=n, prompts=(caption,),
                                   dataset=cs.name, caption_id=file_name))
    return out


def audio_path(audio_dir: Path, config: Config) -> Path:
    """Where the quality sweep writes a clip: ``<audio-dir>/<model>/<dataset>/<steps>/<file_name>``."""
    name = config.caption_id if config.caption_id.lower().endswith(".wav") else f"{config.caption_id}.wav"
    return Path(audio_dir) / config.model / config.dataset / str(config.steps) / name


def check_repeats(repeats: int) -> int:
    """``repeats`` when it is at least 1, else :class:`SweepError` with one line: the one rule a sweep's
    repeats are checked by."""
    if repeats < 1:
        raise SweepError(f"--repeats must be >= 1, got {repeats}")
    return repeats


def run_order(configs: Sequence[Config], repeats: int, seed: int) -> list[tuple[Config, int]]:
    """(configuration, repeat) pairs: repeats in order, configurations shuffled within each repeat (seeded).

    The shuffle breaks the study's always-ascending order, which confounds step count with thermal drift.
    """
    check_repeats(repeats)
    items: list[tuple[Config, int]] = []
    for r in range(repeats):
        order = list(configs)
        random.Random(f"{seed}:{r}").shuffle(order)
        items.extend((c, r) for c in order)
    return items
