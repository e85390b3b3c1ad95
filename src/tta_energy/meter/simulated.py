"""A simulated GPU with an NVML-like energy counter, of exactly known ground truth.

The power model follows what the H200 shows: idle about 78 W; when work starts, board power jumps most of
the way at once and creeps up over seconds (clocks, temperature); when it stops, power drops fast and then
decays slowly (the H200's 1-s averaged power reading goes from ~693 W to ~489 W in 0.5 s). Two first-order
components reproduce that: a fast one (share ``fast_share``, time constant ``tau_fast_s``) and a slow one
(time constant ``tau_slow_s``). With the defaults, the 1-s average of the simulated power 0.5 s after a long
690 W load stops is 488 W, as measured on the H200.

The counter publishes ``floor(1000 * E(u_k - lag_s))`` mJ at update instants ``u_k = phase + k * period``
plus a bounded jitter, and holds that value until the next update: the granularity that makes short
windows hard. ``true_energy_J(t0, t1)`` is the exact integral, the ground truth the tests compare with.

With a :class:`~tta_energy.meter.clock.VirtualClock` the GPU "runs" work by advancing simulated time
(``run(seconds, power_W)``); with the real clock and a schedule fixed in advance (``from_spec``) it can be
rebuilt inside the sampler process, which is how the CPU tests exercise the process sampler end to end.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import random
import time
from dataclasses import dataclass, field

from tta_energy.meter.clock import Clock, MonotonicClock
from tta_energy.meter.sources import GpuInfo

#: period of NVML's GPU-utilization samples on the H200 as the simulation assumes it (1/6 s)
UTILIZATION_PERIOD_S = 1.0 / 6.0


@dataclass(frozen=True)
class CounterModel:
    """How the simulated NVML counter publishes energy."""

    update_period_s: float = 0.1
    update_jitter_s: float = 0.002
    phase_s: float = 0.0
    lag_s: float = 0.0
    offset_mJ: int = 987_654_321
    seed: int = 0


@dataclass(frozen=True)
class PowerModel:
    idle_W: float = 78.0
    fast_share: float = 0.6
    tau_fast_s: float = 0.002  # an assumption: the NVML readings cannot resolve it (see docs/meter.md)
    tau_slow_s: float = 1.5


@dataclass
class _Segment:
    start: float
    load_W: float  # target power above idle
    fast0: float
    slow0: float
    energy0: float  # cumulative energy at start, J


def _first_order(x0: float, target: float, tau: float, dt: float) -> tuple[float, float]:
    """Value after ``dt`` and integral over ``dt`` of x' = (target - x) / tau."""
    decay = math.exp(-dt / tau)
    value = target + (x0 - target) * decay
    integral = target * dt + (x0 - target) * tau * (1.0 - decay)
    return value, integral


@dataclass
class SimulatedGpu:
    clock: Clock
    power: PowerModel = field(default_factory=PowerModel)
    counter: CounterModel = field(default_factory=CounterModel)
    name: str = "Simulated GPU"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    start_time: float | None = None

    def __post_init__(self) -> None:
        t = self.clock.now() if self.start_time is None else self.start_time
        self._segments: list[_Segment] = [_Segment(t, 0.0, 0.0, 0.0, 0.0)]
        self._starts: list[float] = [t]
        self._update_times: dict[int, float] = {}
        self._published: tuple[float, int] = (math.nan, 0)

    # --- driving the load
    def set_load(self, power_W: float, at: float | None = None) -> None:
        """From ``at`` (default now) on, the work draws ``power_W`` in steady state (idle included)."""
        t = self.clock.now() if at is None else float(at)
        if t < self._starts[-1]:
            raise ValueError("load changes must come in time order")
        fast, slow, energy = self._state(t)
        seg = _Segment(t, max(0.0, power_W - self.power.idle_W), fast, slow, energy)
        if t == self._starts[-1]:
            self._segments[-1] = seg
        else:
            self._segments.append(seg)
            self._starts.append(t)

    def run(self, seconds: float, power_W: float) -> None:
        """Do work drawing ``power_W`` for ``seconds`` (advances a virtual clock; sleeps on a real one)."""
        self.set_load(power_W)
        self.clock.sleep(seconds)

    def idle(self, seconds: float) -> None:
        self.run(seconds, self.power.idle_W)

    # --- ground truth
    def _state(self, t: float) -> tuple[float, float, float]:
        """(fast, slow, cumulative energy J) at ``t``."""
        i = bisect.bisect_right(self._starts, t) - 1
        if i < 0:  # before the simulation began: idle since forever
            return 0.0, 0.0, self.power.idle_W * (t - self._starts[0])
        s = self._segments[i]
        dt = t - s.start
        pm = self.power
        fast, e_fast = _first_order(s.fast0, pm.fast_share * s.load_W, pm.tau_fast_s, dt)
        slow, e_slow = _first_order(s.slow0, (1.0 - pm.fast_share) * s.load_W, pm.tau_slow_s, dt)
        return fast, slow, s.energy0 + pm.idle_W * dt + e_fast + e_slow

    def energy_J(self, t: float) -> float:
        return self._state(t)[2]

    def true_energy_J(self, t0: float, t1: float) -> float:
        return self.energy_J(t1) - self.energy_J(t0)

    def power_W(self, t: float | None = None) -> float:
        fast, slow, _ = self._state(self.clock.now() if t is None else t)
        return self.power.idle_W + fast + slow

    # --- the NVML-like counter
    def _update_time(self, k: int) -> float:
        u = self._update_times.get(k)
        if u is None:
            c = self.counter
            jitter = random.Random(c.seed * 1_000_003 + k).uniform(-c.update_jitter_s, c.update_jitter_s)
            u = self._update_times[k] = c.phase_s + k * c.update_period_s + jitter
        return u

    def last_update(self, t: float) -> float:
        c = self.counter
        k = math.floor((t - c.phase_s) / c.update_period_s) + 1
        while self._update_time(k) > t:
            k -= 1
        return self._update_time(k)

    def read_mJ(self) -> int:
        u = self.last_update(self.clock.now())
        if self._published[0] != u:  # the value published at u, computed once
            value = self.counter.offset_mJ + math.floor(1000.0 * self.energy_J(u - self.counter.lag_s))
            self._published = (u, value)
        return self._published[1]

    def utilization_samples(self, since: float, period_s: float = UTILIZATION_PERIOD_S
                            ) -> list[tuple[float, float]]:
        """Samples like NVML's GPU utilization, stamped every ``period_s`` after ``since`` up to now (clock
        time): the share of the period before each stamp during which work (a load above idle) ran."""
        now = self.clock.now()
        out = []
        k = math.floor(since / period_s) + 1
        while k * period_s <= now:
            stamp = k * period_s
            out.append((stamp, self.busy_time_s(stamp - period_s, stamp) / period_s))
            k += 1
        return out

    def busy_time_s(self, t0: float, t1: float) -> float:
        """Seconds of ``[t0, t1]`` with work running (the ground truth of the busy fraction)."""
        busy = 0.0
        for i, seg in enumerate(self._segments):
            end = self._starts[i + 1] if i + 1 < len(self._starts) else math.inf
            if seg.load_W > 0:
                busy += max(0.0, min(end, t1) - max(seg.start, t0))
        return busy

    def trace_values(self) -> dict[str, float]:
        t = self.clock.now()
        return {"power_W": self.energy_J(t) - self.energy_J(t - 1.0),  # NVML's 1-s average on Hopper
                "power_instant_W": self.power_W(t), "temperature_C": math.nan, "sm_clock_MHz": math.nan}

    # --- rebuilding in another process (real clock only)
    def spec(self) -> dict:
        return {"power": dataclasses.asdict(self.power), "counter": dataclasses.asdict(self.counter),
                "name": self.name, "uuid": self.uuid, "start_time": self._starts[0],
                "schedule": [(s.start, s.load_W + self.power.idle_W) for s in self._segments]}

    @classmethod
    def from_spec(cls, spec: dict, clock: Clock | None = None) -> SimulatedGpu:
        gpu = cls(clock or MonotonicClock(), PowerModel(**spec["power"]), CounterModel(**spec["counter"]),
                  spec["name"], spec["uuid"], spec["start_time"])
        for start, power_W in spec["schedule"]:
            gpu.set_load(power_W, at=start)
        return gpu


class SimulatedCounterSource:
    """The simulated GPUs behind the :class:`~tta_energy.meter.sources.CounterSource` protocol."""

    kind = "simulated"

    def __init__(self, gpus: list[SimulatedGpu]) -> None:
        self.gpus = gpus

    @property
    def device_count(self) -> int:
        return len(self.gpus)

    @property
    def infos(self) -> list[GpuInfo]:
        return [GpuInfo(None, i, g.name, g.uuid, math.nan) for i, g in enumerate(self.gpus)]

    def read_mJ(self, device: int) -> int:
        return self.gpus[device].read_mJ()

    def trace_values(self, device: int) -> dict[str, float]:
        return self.gpus[device].trace_values()

    def utilization_samples(self, device: int, since_unix_s: float) -> list[tuple[float, float]]:
        """The simulated GPU's samples with their stamps moved from its clock to Unix time, as NVML's are."""
        gpu = self.gpus[device]
        offset = time.time() - gpu.clock.now()
        return [(t + offset, v) for t, v in gpu.utilization_samples(since_unix_s - offset)]

    def spec(self) -> dict:
        return {"kind": self.kind, "gpus": [g.spec() for g in self.gpus]}

    @classmethod
    def from_spec(cls, spec: dict) -> SimulatedCounterSource:
        return cls([SimulatedGpu.from_spec(g) for g in spec["gpus"]])

    def close(self) -> None:
        pass
