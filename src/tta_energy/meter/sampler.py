"""The counter sampler: polls the energy counters every millisecond or so and records the instants at which
they change, plus a power / temperature / SM-clock trace row per change (the counter's own rate).

Three ways to run the same :class:`Poller`:

* ``process`` (the default on a real GPU): a separate Python process (``python -m
  tta_energy.meter.sampler_process``). It has its own interpreter lock, so its timestamps do not wait for the
  measured program's Python thread (which holds the lock for up to the 5 ms switch interval), and it takes
  nothing from that thread. Both processes read the same monotonic clock (``CLOCK_MONOTONIC``); the link is
  checked at start-up with a ping.
* ``thread``: a thread of this process, the fallback when a process cannot be started.
* ``inline``: a ticker of a :class:`~tta_energy.meter.clock.VirtualClock`, for simulations.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tta_energy.meter.clock import Clock, VirtualClock
from tta_energy.meter.simulated import SimulatedCounterSource
from tta_energy.meter.sources import CounterSource, NvmlCounterSource
from tta_energy.meter.timeline import ChangePoint, DeviceTimeline

log = logging.getLogger("tta_energy.meter")

TRACE_COLUMNS: tuple[str, ...] = ("unix_time", "t", "device", "energy_J", "power_W", "power_instant_W",
                                  "temperature_C", "sm_clock_MHz")


class SamplerError(RuntimeError):
    pass


class TraceWriter:
    """CSV (gzip when the name ends in .gz) of one row per counter update and device."""

    def __init__(self, path: str | Path, clock: Clock) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        raw = gzip.open(self.path, "at", encoding="utf-8") if self.path.suffix == ".gz" else \
            open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the sampler's lifetime
        self._fh: io.TextIOBase = raw
        if new:
            self._fh.write(",".join(TRACE_COLUMNS) + "\n")
        # the trace's time scale is the sampler's monotonic clock; unix_time makes it readable
        self._unix_offset = time.time() - clock.now()
        self._last_flush = clock.now()
        self._clock = clock

    def write(self, t: float, device: int, energy_J: float, values: dict[str, float]) -> None:
        row = [f"{t + self._unix_offset:.4f}", f"{t:.6f}", str(device), f"{energy_J:.3f}",
               *(_num(values.get(k, math.nan)) for k in TRACE_COLUMNS[4:])]
        self._fh.write(",".join(row) + "\n")
        now = self._clock.now()
        if now - self._last_flush > 2.0:
            self._fh.flush()
            self._last_flush = now

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._fh.close()


def _num(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


class Poller:
    """One pass over the devices: read each counter, bracket the instant of any change between two reads."""

    def __init__(self, source: CounterSource, clock: Clock, emit: Callable[[int, ChangePoint], None],
                 trace: TraceWriter | None = None) -> None:
        self.source = source
        self.clock = clock
        self.emit = emit
        self.trace = trace
        self._last: list[tuple[float, int] | None] = [None] * source.device_count
        self.errors = 0

    def poll_once(self) -> None:
        for device in range(self.source.device_count):
            before = self.clock.now()
            try:
                value = self.source.read_mJ(device)
            except Exception:  # a transient NVML error skips one read; the next read brackets the change
                self.errors += 1
                continue
            read_at = 0.5 * (before + self.clock.now())
            last = self._last[device]
            self._last[device] = (read_at, value)
            if last is None or value == last[1]:
                continue
            point = ChangePoint(t=0.5 * (last[0] + read_at), energy_J=value / 1000.0, lo=last[0], hi=read_at)
            self.emit(device, point)
            if self.trace is not None:
                try:
                    values = self.source.trace_values(device)
                except Exception:
                    values = {}
                self.trace.write(point.t, device, point.energy_J, values)


class Sampler:
    """Owns the per-device timelines; subclasses decide where the poller runs."""

    mode = "base"

    def __init__(self, device_count: int, clock: Clock, poll_interval_s: float) -> None:
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self.timelines = [DeviceTimeline() for _ in range(device_count)]
        self.alive = False

    def _emit(self, device: int, point: ChangePoint) -> None:
        self.timelines[device].add(point)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def wait_for_changes(self, after: float, count: int = 1, timeout_s: float = 2.0,
                         devices: list[int] | None = None) -> bool:
        """Wait until each device (or those in ``devices``) has ``count`` change points after ``after``."""
        chosen = range(len(self.timelines)) if devices is None else devices
        deadline = self.clock.now() + timeout_s
        step = min(0.0005, self.poll_interval_s / 2)
        while True:
            if all(self.timelines[d].count_after(after) >= count for d in chosen):
                return True
            if self.clock.now() > deadline or not self.alive:
                return False
            self.clock.sleep(step)


class InlineSampler(Sampler):
    mode = "inline"

    def __init__(self, source: CounterSource, clock: VirtualClock, poll_interval_s: float = 0.001,
                 trace: TraceWriter | None = None) -> None:
        super().__init__(source.device_count, clock, poll_interval_s)
        if not getattr(clock, "virtual", False):
            raise SamplerError("the inline sampler needs a virtual clock")
        self._poller = Poller(source, clock, self._emit, trace)
        self._trace = trace

    def start(self) -> None:
        self._poller.poll_once()
        self.clock.add_ticker(self.poll_interval_s, self._poller.poll_once)  # type: ignore[attr-defined]
        self.alive = True

    def stop(self) -> None:
        self.clock.remove_ticker(self._poller.poll_once)  # type: ignore[attr-defined]
        self.alive = False
        if self._trace is not None:
            self._trace.close()


class ThreadSampler(Sampler):
    mode = "thread"

    def __init__(self, source: CounterSource, clock: Clock, poll_interval_s: float = 0.001,
                 trace: TraceWriter | None = None) -> None:
        super().__init__(source.device_count, clock, poll_interval_s)
        self._poller = Poller(source, clock, self._emit, trace)
        self._trace = trace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tta-energy-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poller.poll_once()
            self._stop.wait(self.poll_interval_s)

    def start(self) -> None:
        self.alive = True
        self._thread.start()

    def cpu_time_s(self) -> float:
        """CPU time the polling thread has used, s (Linux's per-thread clock; 0 where there is none): the
        meter leaves it out of the process's CPU time, which is meant to be the generating code's."""
        ident = self._thread.ident
        if ident is None or not hasattr(time, "pthread_getcpuclockid"):
            return 0.0
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(ident))
        except OSError:  # the thread has ended
            return 0.0

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.alive = False
        if self._trace is not None:
            self._trace.close()


class ProcessSampler(Sampler):
    """The poller in a child process; change points come back as text lines on its stdout."""

    mode = "process"

    def __init__(self, source_spec: dict, device_count: int, clock: Clock, poll_interval_s: float = 0.001,
                 trace_path: str | Path | None = None, start_timeout_s: float = 20.0) -> None:
        super().__init__(device_count, clock, poll_interval_s)
        self._spec = {"source": source_spec, "poll_interval_s": poll_interval_s,
                      "trace_path": str(trace_path) if trace_path else None}
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._pong: list[float] = []
        self._pong_event = threading.Event()
        self._error = ""
        self._write_lock = threading.Lock()
        self._stderr: io.TextIOBase | None = None

    def _receive(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "C":
                dev, t, energy, lo, hi = rest.split(" ")
                self._emit(int(dev), ChangePoint(float(t), float(energy), float(lo), float(hi)))
            elif kind == "P":
                self._pong.append(float(rest))
                self._pong_event.set()
            elif kind == "R":
                self._ready.set()
            elif kind == "E":
                self._error = rest
                self._ready.set()
        self.alive = False
        self._ready.set()

    def _send(self, text: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        with self._write_lock:
            self._proc.stdin.write(text + "\n")
            self._proc.stdin.flush()

    def start(self) -> None:
        env = dict(os.environ)
        # the child imports tta_energy from wherever this process did (an editable install or PYTHONPATH=src)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        # stderr goes to a file: a pipe nobody drains could fill up and block the child
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - lives with the child
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tta_energy.meter.sampler_process", json.dumps(self._spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1, env=env)
        self.alive = True
        self._reader = threading.Thread(target=self._receive, name="tta-energy-sampler-reader", daemon=True)
        self._reader.start()
        if not self._ready.wait(self._start_timeout_s) or self._error or not self.alive:
            reason = self._error or self._stderr_tail() or "no answer"
            self.stop()
            raise SamplerError(f"the sampler process did not start: {reason}")
        # the two processes must share the clock: the child's time of a ping must fall between send and reply
        self._pong_event.clear()
        sent = self.clock.now()
        self._send("PING")
        if not self._pong_event.wait(5.0):
            self.stop()
            raise SamplerError("the sampler process does not answer")
        received = self.clock.now()
        child_time = self._pong[-1]
        if not sent - 1e-3 <= child_time <= received + 1e-3:
            self.stop()
            raise SamplerError(f"the sampler process runs on another clock ({child_time:.3f} not in "
                               f"[{sent:.3f}, {received:.3f}])")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        with contextlib.suppress(Exception):
            self._stderr.seek(0)
        text = self._stderr.read() or ""
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            self._send("STOP")
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5.0)
        for stream in (proc.stdin, proc.stdout, self._stderr):
            with contextlib.suppress(Exception):
                stream.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)
        self.alive = False
        self._proc = None


def source_from_spec(spec: dict) -> CounterSource:
    """Rebuild a counter source inside the sampler process from its ``spec()``."""
    if spec["kind"] == "nvml":
        return NvmlCounterSource.from_spec(spec)
    if spec["kind"] == "simulated":
        return SimulatedCounterSource.from_spec(spec)
    raise ValueError(f"unknown counter source kind {spec['kind']!r}")


def run_child(spec: dict) -> int:
    """Body of the sampler process: poll until told to stop (or until the parent goes away)."""
    from tta_energy.meter.clock import MonotonicClock

    out_lock = threading.Lock()

    def say(text: str) -> None:
        with out_lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    try:
        source = source_from_spec(spec["source"])
    except Exception as exc:
        say(f"E {type(exc).__name__}: {exc}".replace("\n", " "))
        return 1
    clock = MonotonicClock()
    trace = TraceWriter(spec["trace_path"], clock) if spec.get("trace_path") else None
    stop = threading.Event()

    def listen() -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "PING":
                say(f"P {clock.now():.9f}")
            elif command == "STOP":
                break
        stop.set()

    def emit(device: int, point: ChangePoint) -> None:
        say(f"C {device} {point.t:.9f} {point.energy_J!r} {point.lo:.9f} {point.hi:.9f}")

    poller = Poller(source, clock, emit, trace)
    threading.Thread(target=listen, name="listen", daemon=True).start()
    say("R")
    interval = float(spec.get("poll_interval_s", 0.001))
    try:
        while not stop.is_set():
            poller.poll_once()
            stop.wait(interval)
    finally:
        if trace is not None:
            trace.close()
        source.close()
    return 0
