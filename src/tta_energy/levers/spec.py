"""Lever specs: the names of the energy levers and their parsing into one :class:`Levers` object.

A spec is a named level or a comma list of levers (levels may be combined with levers):

* ``none``: the study's default: the model's own precision (the catalogue's: fp16 for AudioLDM, AudioLDM 2
  and Stable Audio Open; fp32 for Tango, Tango 2, Make-An-Audio and Make-An-Audio 2, whose code runs fp32),
  eager PyTorch, batch as asked;
* ``graphs``: the denoiser captured as a CUDA graph (``cudagraph``);
* ``max``: fp16 (fp16 and bf16 run at the same tensor-core rate on Hopper and move the same bytes; fp16
  keeps 3 more mantissa bits, so a smaller error against fp32), the fastest attention kernel measured on the
  model (``sdpa-best``), channels-last convolutions and fused attention projections where the denoiser has
  them, and the CUDA graph;
* single levers: ``fp32``, ``fp16``, ``bf16`` (precision of every component), ``compile`` (Inductor, no
  graphs), ``compile-graphs`` (``torch.compile(mode="reduce-overhead")``: Inductor + CUDA graph trees),
  ``compile-blocks`` (Inductor on each of the denoiser's repeated blocks, the rest eager: blocks of one class
  and shape share one compilation, so it compiles a fraction of what ``compile`` does; with ``cudagraph`` or
  ``max`` the whole denoiser is then replayed from one manually captured graph),
  ``cudagraph`` (eager kernels replayed from a manually captured graph, static input buffers), ``sdpa-flash``,
  ``sdpa-cudnn``, ``sdpa-efficient``, ``sdpa-math``, ``sdpa-best`` (attention backend preferred by
  ``torch.nn.attention.sdpa_kernel``; others stay allowed as fallbacks), ``channels-last``, ``fuse-qkv`` and
  ``trim-latents`` (Stable Audio Open: run the DiT on the requested length instead of 47.55 s; this CHANGES
  the model's output and is never counted as lossless), ``fp8`` (the linear layers of the denoiser's
  transformer blocks in float8 with dynamic per-row scales through torchao, on GPUs of compute capability
  8.9+; CHANGES the output: reported with its error, never lossless), ``tf32`` (the denoiser's float32
  matrix products on TF32 tensor cores, inputs rounded to 10 mantissa bits: what PyTorch already does by
  default in convolutions, so in the study's fp32 runs too; judged lossless or not by its error like any
  other lever).

A spec is parsed once, where it enters (the command line, a levers plan), and the :class:`Levers` object
travels from there. The run table stores its canonical text in the ``optimize`` column (the column keeps the
name it had before the option was called ``--levers``, so that older tables still read). Importing this
module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from tta_energy.errors import TtaError, listed_once
from tta_energy.precision import DTYPE_ALIASES, generation_precision
from tta_energy.study import STUDY_STEPS

#: The study default's spec: the model's own precision, eager, no lever (the ``optimize`` column's value for
#: every run without levers, the study's imported rows included)
DEFAULT_SPEC = "none"
#: The three tiers of a run without a plan, so that each lever alone is not measured over the whole grid: the
#: default and the combination over the whole grid (steps x batch); CUDA graphs alone at batch 1 (both step
#: counts: its one-time capture cost is the warm-up at the smaller one); every other lever alone at the
#: largest step count, batch 1. A spec that turns out to be the same configuration as an earlier one for a
#: model (fp16 where the default is fp16, a lever that does not fit the model) is dropped with a note.
FULL_GRID_SPECS: tuple[str, ...] = (DEFAULT_SPEC, "max")
BATCH1_SPECS: tuple[str, ...] = ("graphs",)
SINGLE_SPECS: tuple[str, ...] = ("fp16", "bf16", "sdpa-best", "channels-last", "fuse-qkv")
#: Inductor compilation (a minute or more of CPU per model and shape): for the models of ``compile_models``
COMPILE_SPECS: tuple[str, ...] = ("compile", "compile-graphs")
#: Stable Audio Open only: compute just the requested length (changes the output)
TRIM_SPECS: tuple[tuple[str, bool], ...] = (("trim-latents", False), ("max,trim-latents", True))
#: a run without a plan file: its step counts, batch sizes (waveforms per prompt) and repeats per cell
DEFAULT_STEPS: tuple[int, ...] = (10, 100)
DEFAULT_BATCHES: tuple[int, ...] = (1, 10)
DEFAULT_REPEATS = 3
#: the summary's whole-generation target cell: the study's step count, one clip per prompt
#: (:func:`tta_energy.levers.report.target_cell`)
TARGET_STEPS, TARGET_BATCH = STUDY_STEPS, 1
#: a plan file that names no step counts or batch sizes: the target cell only. A plan declares its cells, so
#: it does not take the grid of a run without a plan, whose second step count and batch size serve the tiers
#: above
PLAN_DEFAULT_STEPS: tuple[int, ...] = (TARGET_STEPS,)
PLAN_DEFAULT_BATCHES: tuple[int, ...] = (TARGET_BATCH,)
#: the bf16 (or fp8) matmul ceiling loop: its seconds and its matrix size on a GPU; on a CPU, where no energy
#: is measured and the loop only exercises the path, a size that keeps it to about its seconds (8192's
#: calibration products alone took two cores minutes)
CEILING_S = 5.0
CEILING_MATRIX_N = 8192
CPU_CEILING_MATRIX_N = 256


class LeverError(TtaError):
    """A lever spec that cannot be parsed or applied; the message is one line."""


class LeversError(TtaError):
    """A levers experiment that cannot run as asked; the message is one line."""


#: the spec of a model's fp32 eager reference, against which every configuration's error is measured
REFERENCE_SPEC = "fp32"

#: the precision levers: lever name -> precision name
PRECISIONS: dict[str, str] = {name: DTYPE_ALIASES[name] for name in ("fp32", "fp16", "bf16")}
#: the precision ``max`` runs every model in (see the module's docstring)
MAX_LEVEL_PRECISION = "float16"

SDPA_BACKENDS: tuple[str, ...] = ("flash", "cudnn", "efficient", "math")
#: compilation levers: lever -> (torch.compile mode, what is compiled: the whole denoiser or its blocks)
COMPILE_LEVERS: dict[str, tuple[str, str]] = {"compile": ("default", "denoiser"),
                                              "compile-graphs": ("reduce-overhead", "denoiser"),
                                              "compile-blocks": ("default", "blocks")}
SINGLE_LEVERS: tuple[str, ...] = (
    *PRECISIONS, *COMPILE_LEVERS, "cudagraph", *(f"sdpa-{b}" for b in SDPA_BACKENDS), "sdpa-best",
    "channels-last", "fuse-qkv", "trim-latents", "fp8", "tf32",
)
LEVELS: tuple[str, ...] = (DEFAULT_SPEC, "graphs", "max")


@dataclass(frozen=True)
class Levers:
    """A parsed lever spec. ``spec`` is the canonical text stored in the run table's ``optimize`` column."""

    spec: str = DEFAULT_SPEC
    precision: str | None = None  # float32/float16/bfloat16 (``max``: float16); None: not set by the levers
    compile_mode: str | None = None  # None, "default" or "reduce-overhead"
    compile_scope: str | None = None  # None, "denoiser" (one module) or "blocks" (its repeated blocks)
    #: torch.compile backend; Inductor unless a caller replaces it (the CPU tests use Dynamo's "eager": the
    #: same graph capture and guards without Inductor's C++ builds, which take many minutes on 2 cores)
    compile_backend: str = "inductor"
    cudagraph: bool = False
    sdpa: str | None = None  # None, one of SDPA_BACKENDS, or "best"
    channels_last: bool = False
    fuse_qkv: bool = False
    trim_latents: bool = False
    fp8: bool = False  # float8 linear layers in the denoiser's transformer blocks (torchao)
    tf32: bool = False  # the denoiser's float32 matrix products on TF32 tensor cores
    #: levers that came from a level (``max``/``graphs``): skipped with a reason where unavailable
    implied: frozenset[str] = frozenset()

    @property
    def is_none(self) -> bool:
        """True for the study default (:data:`DEFAULT_SPEC`)."""
        return self.spec == DEFAULT_SPEC

    @property
    def items(self) -> tuple[str, ...]:
        """The levels and levers the spec names, in its canonical order (``("max", "fp8")``; the study
        default: ``("none",)``)."""
        return tuple(self.spec.split(","))

    @property
    def compiled(self) -> bool:
        """True when the denoiser (or its blocks) is compiled with ``torch.compile``."""
        return self.compile_mode is not None

    def without(self, *names: str) -> Levers:
        """These levers without the named items of the spec (:attr:`items`), parsed again: ``max,fp8``
        without ``fp8`` is ``max``; the study default where nothing is left. A lever that only a level
        implies (``cudagraph`` of ``max``) is not an item and cannot be taken out: :class:`LeverError`."""
        implied = [n for n in names if n not in self.items and n in self.names]
        if implied:
            raise LeverError(f"lever spec {self.spec!r}: {implied[0]} comes from a level; take out the level")
        return parse_levers(",".join(t for t in self.items if t not in names) or DEFAULT_SPEC)

    @property
    def names(self) -> tuple[str, ...]:
        """The spec's levers by their single names (its precision first), whether named or implied."""
        compiled = [k for k, v in COMPILE_LEVERS.items() if v == (self.compile_mode, self.compile_scope)]
        flags = ((self.cudagraph, "cudagraph"), (self.sdpa is not None, f"sdpa-{self.sdpa}"),
                 (self.channels_last, "channels-last"), (self.fuse_qkv, "fuse-qkv"),
                 (self.trim_latents, "trim-latents"), (self.fp8, "fp8"), (self.tf32, "tf32"))
        precision = [k for k, v in PRECISIONS.items() if v == self.precision]  # fp16, not float16
        return (*precision, *compiled, *(n for on, n in flags if on))

    @property
    def changes_behaviour(self) -> bool:
        """True when a lever changes the computation by design (the output is not meant to match)."""
        return self.trim_latents or self.fp8

    def precision_for(self, model: str, configured: str | None = None, option: str | None = None) -> str:
        """The precision a generation of ``model`` runs in under these levers (see
        :func:`tta_energy.precision.generation_precision`: levers, configuration, option, model default)."""
        return generation_precision(model, self.precision, configured, option)


NO_LEVERS = Levers()


def _items(spec: str) -> list[str]:
    """The comma (or plus) separated items of a spec, empty ones kept."""
    return [t.strip().lower() for t in spec.replace("+", ",").split(",")]


def parse_levers(spec: str | Levers) -> Levers:
    """Parse ``none``, ``graphs``, ``max`` or a comma list such as ``compile,bf16,sdpa-flash``.

    Raises :class:`LeverError` (one line) for an unknown name or levers that exclude each other. A
    :class:`Levers` is returned as it is.
    """
    if isinstance(spec, Levers):
        return spec
    tokens = listed_once(_items(spec or ""), f"lever spec {spec!r}", "levers", error=LeverError,
                         otherwise=" or a level (none, graphs, max)")
    known = set(LEVELS) | set(SINGLE_LEVERS)
    unknown = [t for t in tokens if t not in known]
    if unknown:
        raise LeverError(f"unknown lever {unknown[0]!r}: use a level ({', '.join(LEVELS)}) or levers "
                         f"({', '.join(SINGLE_LEVERS)})")
    if DEFAULT_SPEC in tokens and len(tokens) > 1:
        raise LeverError(f"lever spec {spec!r}: {DEFAULT_SPEC!r} cannot be combined with other levers")
    explicit: list[str] = []
    implied: list[str] = []
    max_precision = False
    for t in dict.fromkeys(tokens):
        if t == "graphs":
            implied.append("cudagraph")
        elif t == "max":
            max_precision = True
            implied += ["sdpa-best", "channels-last", "fuse-qkv", "cudagraph"]
        elif t != DEFAULT_SPEC:
            explicit.append(t)
    precisions = [t for t in explicit if t in PRECISIONS]
    if len(precisions) > 1:
        raise LeverError(f"lever spec {spec!r} names two precisions ({', '.join(precisions)}): choose one")
    sdpas = [t for t in explicit if t.startswith("sdpa-")]
    if len(sdpas) > 1:
        raise LeverError(f"lever spec {spec!r} names two attention backends ({', '.join(sdpas)}): choose one")
    # an explicit choice overrides what a level implies
    if sdpas:
        implied = [t for t in implied if not t.startswith("sdpa-")]
    if "compile-graphs" in explicit:
        implied = [t for t in implied if t != "cudagraph"]
    levers = set(explicit) | set(implied)
    compiles = [t for t in explicit if t in COMPILE_LEVERS]
    if len(compiles) > 1:
        raise LeverError(f"lever spec {spec!r} names two compilations ({', '.join(compiles)}): choose one")
    if "compile-graphs" in levers and "cudagraph" in levers:
        raise LeverError(f"lever spec {spec!r}: compile-graphs already captures CUDA graphs; do not combine "
                         "it with cudagraph")
    sdpa = next((t for t in levers if t.startswith("sdpa-")), None)
    compile_mode, compile_scope = COMPILE_LEVERS[compiles[0]] if compiles else (None, None)
    canonical = ",".join(dict.fromkeys(tokens))
    return Levers(
        spec=canonical,
        precision=(PRECISIONS[precisions[0]] if precisions
                   else MAX_LEVEL_PRECISION if max_precision else None),
        compile_mode=compile_mode,
        compile_scope=compile_scope,
        cudagraph="cudagraph" in levers,
        sdpa=sdpa.removeprefix("sdpa-") if sdpa else None,
        channels_last="channels-last" in levers,
        fuse_qkv="fuse-qkv" in levers,
        trim_latents="trim-latents" in levers,
        fp8="fp8" in levers,
        tf32="tf32" in levers,
        implied=frozenset(set(implied) - set(explicit)),
    )


def describe_levers(levers: Levers) -> dict[str, object]:
    """The parsed spec as a plain dict (``tta-energy levers explain``)."""
    d: dict[str, object] = {k: v for k, v in levers.__dict__.items() if k != "implied"}
    d["implied_by_level"] = sorted(levers.implied)
    d["changes_behaviour"] = levers.changes_behaviour
    return d

