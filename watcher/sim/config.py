"""The simulator's settings: one frozen value, built once (by the CLI or a test) and passed down.

The demo credentials are what `watcher sim` accepts when none are found in the environment; they
are printed for the user to export, so they are deliberately not secret.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from watcher._auth import AkSk, Token
from watcher.sim.faults import NO_FAULTS, FaultPlan

DEMO_AK = "SIMDEMOAK00000000000"
DEMO_SK = "simdemosk0000000000000000000000000000000"
DEMO_PROJECT_ID = "0123456789abcdef0123456789abcdef"


@dataclass(frozen=True, slots=True)
class SimConfig:
    """What the simulator accepts and how it behaves.

    - `credentials`: the one credential the gateway accepts. `AkSk` means SDK-HMAC-SHA256 signed
      requests with that AK (and, when it has a `security_token`, a matching `X-Security-Token`);
      `Token` means an `X-Auth-Token` equal to it.
    - `seed`: makes created job ids and the per-request fault decisions deterministic; it does
      not affect which jobs fail (nor which end CANCELED under the `unknown_state` fault).
    - `time_scale`: multiplies every simulated duration (0.01 runs 100x faster; 0 finishes jobs
      the moment they are created).
    - `slots`: how many jobs synthesise at once; later jobs wait (state WAITING).
    - `url_ttl`: seconds of real wall-clock time a result link stays valid; never scaled.
    - `fail_percent`: share of job ids (0-100) that end FAILED, chosen by a hash of the id.
    - `max_skew`: seconds `X-Sdk-Date` may differ from the wall clock.
    - `rate_limit`: requests per second allowed per API, or None for no limit.
    - `faults`: how often to answer badly on purpose (see `watcher.sim.faults`); none by default.
    - `storage_latency`: seconds before the first byte of every storage answer (real time).
    - `storage_bandwidth`: bytes a second each storage answer is sent at, at most (None: as fast
      as loopback goes).
    - `random_order`: preloaded jobs are synthesised in a random order (from `seed`), not in
      creation order, as a service that ignores creation order would (jobs created later queue
      after them as usual).

    Raises ValueError when a value is out of range.
    """

    project_id: str
    credentials: AkSk | Token
    seed: int = 0
    time_scale: float = 1.0
    slots: int = 4
    url_ttl: float = 3600.0
    fail_percent: int = 10
    max_skew: float = 900.0
    rate_limit: float | None = None
    faults: FaultPlan = NO_FAULTS
    random_order: bool = False
    storage_latency: float = 0.0
    storage_bandwidth: float | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.project_id:
            problems.append("project_id must not be empty")
        if not (math.isfinite(self.time_scale) and self.time_scale >= 0):
            problems.append(f"time_scale must be a finite number >= 0, not {self.time_scale}")
        if self.slots < 1:
            problems.append(f"slots must be >= 1, not {self.slots}")
        if not self.url_ttl > 0:
            problems.append(f"url_ttl must be > 0, not {self.url_ttl}")
        if not 0 <= self.fail_percent <= 100:
            problems.append(f"fail_percent must be 0-100, not {self.fail_percent}")
        if not self.max_skew >= 0:
            problems.append(f"max_skew must be >= 0, not {self.max_skew}")
        if self.rate_limit is not None and not (
            math.isfinite(self.rate_limit) and self.rate_limit > 0
        ):
            problems.append(f"rate_limit must be > 0 or None, not {self.rate_limit}")
        if not (math.isfinite(self.storage_latency) and self.storage_latency >= 0):
            problems.append(f"storage_latency must be >= 0, not {self.storage_latency}")
        if self.storage_bandwidth is not None and not (
            math.isfinite(self.storage_bandwidth) and self.storage_bandwidth > 0
        ):
            problems.append(f"storage_bandwidth must be > 0 or None, not {self.storage_bandwidth}")
        if problems:
            raise ValueError("; ".join(problems))
