"""The GPU's ceiling: a bf16 matrix-product loop measured with the project's meter, in TFLOP per joule; beside
it, on GPUs with float8 tensor cores (compute capability 8.9+), the same loop in float8 (``torch._scaled_mm``,
e4m3 operands, bf16 output), the limit of the ``fp8`` lever.

The levers experiment measures it at the start of each run and the end of each call and reports each
configuration's FLOP per joule as a fraction of it; ``tta-energy levers ceiling`` measures it on its own, on a
GPU only: a CPU has no energy counter to divide by (the levers experiment's CPU runs still time the loop, in
float32, and say so in the row's ``precision``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tta_energy.devices import chosen_device, is_gpu
from tta_energy.errors import positive_number
from tta_energy.experiments.runner import SweepOptions, make_meter, new_run_id, now_iso
from tta_energy.fileio import writable_file
from tta_energy.levers.spec import CEILING_MATRIX_N, CEILING_S, CPU_CEILING_MATRIX_N, LeversError
from tta_energy.levers.tables import append_csv

EXPERIMENT = "levers"
#: the ceiling loop's operand precisions: bf16 (the reference every configuration is compared with) and fp8
CEILING_PRECISIONS = ("bf16", "fp8")


def check_precision(precision: str, device: Any) -> None:
    """One of :data:`CEILING_PRECISIONS` that ``device`` can run (fp8: compute capability 8.9+)."""
    if precision not in CEILING_PRECISIONS:
        raise LeversError(f"unknown ceiling precision {precision!r}: "
                          f"choose one of {', '.join(CEILING_PRECISIONS)}")
    if precision == "fp8":
        import torch

        from tta_energy.levers.apply import fp8_unavailable

        reason = fp8_unavailable(torch.device(device))
        if reason:
            raise LeversError(f"fp8 ceiling: {reason}")


@dataclass
class CeilingResult:
    """The GPU's bf16 matrix-product limit as measured by the project's meter."""

    n: int
    iterations: int
    wall_s: float
    gpu_energy_J: float
    device: str
    precision: str = "bf16"  # the operands' precision as run: one of CEILING_PRECISIONS, or fp32 on a CPU

    @property
    def flop(self) -> float:
        return 2.0 * self.n ** 3 * self.iterations

    @property
    def tflop_per_s(self) -> float:
        return self.flop / self.wall_s / 1e12

    @property
    def tflop_per_J(self) -> float:
        return self.flop / self.gpu_energy_J / 1e12 if self.gpu_energy_J > 0 else float("nan")

    @property
    def power_W(self) -> float:
        return self.gpu_energy_J / self.wall_s if self.wall_s > 0 else float("nan")


def measure_ceiling(meter: Any, device: str = "cuda", seconds: float = CEILING_S, n: int = CEILING_MATRIX_N,
                    precision: str = "bf16") -> CeilingResult:
    """A bf16 (or fp8) ``n x n x n`` matrix-product loop of about ``seconds``, inside the meter's window.

    Random operands (zeros run faster on this hardware and would flatter the ceiling), one output buffer, a
    short calibration first so that the loop length is fixed before the measured window opens. ``fp8``
    raises :class:`LeversError` off a GPU of compute capability 8.9+. On a CPU (the levers experiment's CPU
    runs) a bf16 loop runs in float32, bf16 matmul being an emulation there, and the result says ``fp32``."""
    import torch

    check_precision(precision, device)
    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32  # CPU bf16 matmul is an emulation
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, n, device=dev, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=dev, dtype=dtype, generator=gen)
    c = torch.empty(n, n, device=dev, dtype=dtype)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if precision == "fp8":
        a8 = a.to(torch.float8_e4m3fn)
        b8 = b.to(torch.float8_e4m3fn).t().contiguous().t()  # second operand column-major (cuBLASLt)
        one = torch.ones((), device=dev, dtype=torch.float32)

        def loop(iterations: int) -> None:
            for _ in range(iterations):
                torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
            sync()
    else:
        def loop(iterations: int) -> None:
            for _ in range(iterations):
                torch.matmul(a, b, out=c)
            sync()

    loop(3)  # cuBLAS handle and heuristics, clocks up
    t0 = time.perf_counter()
    loop(5)
    per = max((time.perf_counter() - t0) / 5, 1e-6)
    iterations = max(3, int(seconds / per))
    _, m = meter.measure(lambda phases: loop(iterations))
    ran = "fp32" if dtype == torch.float32 and precision == "bf16" else precision  # what the row says
    return CeilingResult(n=n, iterations=iterations, wall_s=float(m.wall_s),
                         gpu_energy_J=float(m.gpu_energy_J), device=str(dev), precision=ran)


def ceiling_matrix_n(device: str, asked: int | None = None) -> int:
    """The ceiling loop's matrix size: ``asked`` when given, else the default of the device's kind."""
    if asked is not None:
        return asked
    return CEILING_MATRIX_N if is_gpu(device) else CPU_CEILING_MATRIX_N


def ceiling_record(res: CeilingResult, run_id: str, when: str,
                   provenance: dict[str, object]) -> dict[str, object]:
    """One row of ``levers_ceiling.csv``."""
    return {"run_id": run_id, "when": when, "device": res.device, "gpu_name": provenance.get("gpu_name", ""),
            "precision": res.precision, "n": res.n, "iterations": res.iterations, "wall_s": res.wall_s,
            "gpu_energy_J": res.gpu_energy_J,
            "tflop_per_s": res.tflop_per_s, "tflop_per_J": res.tflop_per_J, "power_W": res.power_W,
            "timestamp": now_iso()}


def check_device_is_gpu(asked: str | None, device: str) -> None:
    """Refuse a CPU: the ceiling is TFLOP per joule of an NVIDIA GPU's own energy counter, and a CPU has none
    (its loop would also run minutes at the default size, in float32 rather than bf16)."""
    if is_gpu(device):
        return
    why = "--device cpu was asked for" if asked is not None else "torch sees no NVIDIA GPU here"
    raise LeversError(f"the ceiling needs an NVIDIA GPU ({why}): it is TFLOP per joule of the GPU's energy "
                      "counter, and energy is not measured on a CPU; use --device cuda or cuda:N on a GPU "
                      "machine")


def check_ceiling_loop(seconds: float, n: int | None) -> None:
    """The ceiling loop's settings (``--ceiling-s``, ``--ceiling-n``; None: the GPU's own size): a finite
    length > 0, a matrix size of at least 16. The one rule ``levers ceiling`` and ``levers run`` check."""
    positive_number(seconds, "--ceiling-s", unit="seconds", error=LeversError)
    if n is not None and n < 16:
        raise LeversError(f"--ceiling-n must be >= 16 (the matrix size), got {n}")


def measure_ceiling_once(device: str | None = None, seconds: float = CEILING_S, n: int = CEILING_MATRIX_N,
                         out: Path | None = None, precision: str = "bf16") -> dict[str, object]:
    """The ceiling on its own (``tta-energy levers ceiling``, ``benchmarks/ceiling.py``): one meter session,
    one loop; the row is appended to ``out`` when given. Every value is checked first, then a device that is
    not a CUDA GPU is refused (:func:`check_device_is_gpu`), all before the meter starts."""
    check_ceiling_loop(seconds, n)
    dev = chosen_device(device)
    check_precision(precision, dev)  # every value, before the meter starts (and warns)
    if out is not None:  # a folder is refused, its folder must exist, a file must take a row (or be made)
        writable_file(Path(out), "--out")
    check_device_is_gpu(device, dev)
    meter = make_meter(SweepOptions(model="", experiments=(EXPERIMENT,), codecarbon=False), dev, None)
    with meter:
        res = measure_ceiling(meter, dev, seconds, n, precision)
        row = ceiling_record(res, new_run_id(), "standalone", dict(meter.provenance()))
    if out is not None:
        append_csv(Path(out), row)
    return row
