"""``tta-energy describe`` and ``tta-energy generate``: look inside a model, make audio with it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tta_energy.cli import checks, options
from tta_energy.devices import DEVICE_HELP, chosen_device
from tta_energy.errors import TtaError
from tta_energy.models import catalogue


def denoiser_progress(adapter: object, total: int, description: str) -> object:
    """A progress bar on stderr advanced by every forward call of the adapter's denoiser (a forward hook,
    so it counts the calls the sampler really makes); close it with ``.close()``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=description, unit="step", file=sys.stderr, leave=False,
               disable=not sys.stderr.isatty())

    def count_call(*_: object) -> None:  # returns None: a forward hook's return value replaces the output
        bar.update(1)

    handle = adapter.denoiser.register_forward_hook(count_call)  # type: ignore[attr-defined]

    class _Progress:
        def close(self) -> None:
            handle.remove()
            bar.close()

    return _Progress()


def register(app: typer.Typer) -> None:
    @app.command("describe")
    def describe_cmd(
        model: str = typer.Option(..., "--model", "-m", help="canonical model name, e.g. audioldm"),
        size: str = typer.Option("full", help="full or tiny"),
        as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
        duration: float | None = typer.Option(None, *options.DURATION_S_FLAGS,
                                              help="audio seconds the shapes and FLOPs are computed for "
                                                   "(default 10 s; what generate accepts)"),
        recount: bool = typer.Option(False, "--recount", help="build the model and count again (10 s is "
                                     "otherwise read from the table the tests recompute)"),
    ) -> None:
        """Parameters per component, the denoiser's per-step input and GFLOP per step / per generation.

        Built with random weights on the meta device (nothing allocated); FLOPs from torch's FLOP counter.
        At 10 s the answer is read from a table of those counts (the tests recompute it; --recount).
        """
        checks.model(model)
        checks.size(size)
        if duration is not None:
            checks.duration(model, size_name=size, seconds=duration)
        seconds = catalogue.DESCRIBE_DURATION_S if duration is None else duration
        d = None if recount else catalogue.precomputed_description(model, size, seconds)
        if d is None:
            from tta_energy.models.describe import describe_model

            with Console(stderr=True).status(f"building {model} ({size}) on the meta device, counting FLOPs"):
                d = describe_model(model, size=size, duration_s=duration)
        if as_json:
            typer.echo(json.dumps(d, indent=2))
            return
        table = Table("component", "class", "parameters [M]", title=f"{d['model']} ({d['size']})")
        for name, count in d["components"].items():
            table.add_row(name, d["component_classes"][name], f"{count / 1e6:.1f}")
        table.add_row("total", "", f"{d['total_params'] / 1e6:.1f}", style="bold")
        console = Console()
        console.print(table)
        console.print(f"denoiser: {d['denoiser']}, {d['denoiser_params'] / 1e6:.1f}M parameters")
        computed = "" if abs(d["latent_seconds"] - d["duration_s"]) < 0.005 else (
            f"; the denoiser computes {d['latent_seconds']:g} s")
        console.print(f"denoiser input per step ({d['duration_s']:g} s asked{computed}, batch {d['batch']}, "
                      f"CFG): {tuple(d['denoiser_input_shape'])}")
        console.print(f"GFLOP per denoising step (CFG): {d['gflop_per_step']:.1f}")
        by_call = ", ".join(f"{k} {v:.1f}" for k, v in d["gflop_once_per_generation_by_call"].items())
        console.print(f"GFLOP once per generation, outside the denoising loop: "
                      f"{d['gflop_once_per_generation']:.1f} ({by_call})")
        console.print(f"FLOPs counted with {d['flop_method']}")

    @app.command("generate")
    def generate_cmd(
        model: str = typer.Option(..., "--model", "-m", help="canonical model name, e.g. audioldm"),
        prompt: str = typer.Option(..., "--prompt", help="text prompt"),
        steps: int = typer.Option(..., "--steps", help="denoising steps"),
        duration: float = typer.Option(None, *options.DURATION_S_FLAGS,
                                       help="audio seconds per clip (default: the model's, 10 s at full "
                                            "size; a tiny size's own length)"),
        out: Path = typer.Option(..., "--out", help="output FILE.wav (several clips: FILE_0.wav, ...)"),
        batch: int = typer.Option(1, "--batch", help="waveforms per prompt"),
        seed: int = typer.Option(0, "--seed", help="seed of the initial noise"),
        guidance: float = typer.Option(None, "--guidance-scale", "--guidance",
                                       help="CFG scale, a row's guidance_scale (default: the model's)"),
        negative_prompt: str = typer.Option(None, "--negative-prompt",
                                            help="negative prompt (default: the model's; '' for none)"),
        weights: str = typer.Option("random", "--weights",
                                    help="'random' (replica) or a weights folder/hub id"),
        size: str = typer.Option("full", "--size", help="full or tiny"),
        device: str = typer.Option(None, "--device", help=DEVICE_HELP),
        dtype: str = typer.Option(None, "--dtype", help="float16/bfloat16/float32 "
                                  "(default: the model's on GPU, float32 on CPU)"),
    ) -> None:
        """Generate audio for one prompt and write it as WAV at the model's sample rate."""
        # every value is checked before torch is imported or a model is built
        checks.device(device)
        dtype = checks.dtype(dtype)
        checks.generation(model, size_name=size, prompts=[prompt], steps=steps, batch=batch,
                          duration_s=duration, guidance_scale=guidance)
        defaults = checks.model(model).defaults
        if negative_prompt and guidance is not None and not defaults.runs_guidance(guidance):
            raise TtaError(f"--negative-prompt has no effect at --guidance-scale {guidance:g} "
                           f"({defaults.guidance_off_text()}): leave it out or raise --guidance-scale")
        checks.weights(weights)
        checks.seed(seed)
        from tta_energy.audio_io import check_wav_path, clip_paths, nonfinite_audio, write_clips

        for path in clip_paths(out, batch):  # every file the batch writes, before the first is written
            check_wav_path(path)
        checks.writable_folder(out.parent)

        from tta_energy.models.base import GenerationRequest
        from tta_energy.models.registry import build_model, check_request_shape
        from tta_energy.precision import generation_precision

        device = chosen_device(device)
        dtype = generation_precision(model, option=dtype, device=device)
        request = GenerationRequest(prompts=[prompt], steps=steps, waveforms_per_prompt=batch,
                                    duration_s=duration, guidance_scale=guidance,
                                    negative_prompt=negative_prompt, seed=seed)
        check_request_shape(model, size, request)  # the model's own rules, before its weights are built
        checks.cpu_full_size_warning(device, size)
        with Console(stderr=True).status(f"building {model} ({size}, {dtype}) on {device}"):
            adapter = build_model(model, size=size, weights=weights, device=device, dtype=dtype)
        adapter.check_request(request)  # the model's own checks, before any compute
        start = time.perf_counter()
        progress = denoiser_progress(adapter, adapter.denoiser_calls(steps), f"{model} denoising")
        try:
            result = adapter.generate(request)
        finally:
            progress.close()
        seconds = time.perf_counter() - start
        nonfinite = nonfinite_audio(result.waveforms)  # a WAV of NaN samples is no audio: none is written
        if nonfinite is not None:
            default = catalogue.entry(model).defaults.guidance_scale
            half = "" if dtype == "float32" else f" or, in {dtype}, try --dtype float32"
            raise TtaError(f"the audio came out NaN/Inf ({nonfinite}); nothing was written: lower "
                           f"--guidance-scale (the model's default is {default:g}){half}")
        paths = write_clips(out, result.waveforms, result.sample_rate)
        shown = str(paths[0]) if len(paths) == 1 else f"{clip_paths(out, len(paths))[0]} .. {paths[-1].name}"
        clip_s = result.waveforms.shape[-1] / result.sample_rate
        typer.echo(f"wrote {shown}: {len(paths)} clip(s) x {clip_s:g} s "
                   f"at {result.sample_rate} Hz | {model} size={size} weights={weights} steps={steps} "
                   f"denoiser_calls={result.denoiser_calls} device={device} in {seconds:.1f} s")
