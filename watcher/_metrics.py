"""Prometheus metrics of one run, for the scheduler and the on-call engineer.

Fed by the run's two hooks (`on_result` for each manifest line, `on_progress` for each Snapshot),
so the engine knows nothing of Prometheus. Three ways out, any or all:

- `--pushgateway URL`: pushed every `push_interval` seconds and once at the end (the Prometheus
  convention for batch jobs), grouped by `batch` (and `shard`), so each night replaces its group;
- `--metrics-port N`: served over HTTP while the run lasts (a long-running process);
- `--metrics-textfile PATH`: written at exit, atomically, for node-exporter's textfile collector
  on cron hosts.

Every family is prefixed `watcher_`. A push or write that fails is a warning, never the run's end:
metrics are a view of the run, not part of it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import anyio
import anyio.to_thread
import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    push_to_gateway,
    start_http_server,
    write_to_textfile,
)

from watcher._manifest import JobResult
from watcher._progress import Snapshot

log = structlog.get_logger("watcher.metrics")
DELAY_BUCKETS = (0.5, 1, 2, 3, 5, 8, 13, 21, 34, 55, 90, 180, 600, 1800, 3600)
PUSH_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Where metrics go. `batch` names the run's group at the Pushgateway (with `shard`)."""

    pushgateway: str | None = None
    port: int | None = None
    host: str = "0.0.0.0"  # noqa: S104  (a pod's metrics port is scraped from outside)
    textfile: str | None = None
    batch: str = "watcher"
    shard: str | None = None
    push_interval: float = 30.0

    @property
    def enabled(self) -> bool:
        """Whether any way out is set."""
        return bool(self.pushgateway or self.port is not None or self.textfile)


class Metrics:
    """The run's metric families, in a registry of their own (never the global one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Counter(
            "watcher_jobs", "Jobs written to the manifest, by status", ["status"], registry=r
        )
        self.stage = Gauge(
            "watcher_jobs_pending", "Jobs not yet final, by stage", ["stage"], registry=r
        )
        self.admitted = Gauge("watcher_jobs_admitted", "Jobs admitted so far", registry=r)
        self.failures = Counter(
            "watcher_job_failures", "Jobs not SUCCEED, by error code", ["code"], registry=r
        )
        self.files = Counter("watcher_files_saved", "Result files saved", registry=r)
        self.bytes = Counter("watcher_bytes_saved", "Bytes of result files saved", registry=r)
        self.elapsed = Histogram(
            "watcher_job_elapsed_seconds",
            "Seconds from a job's first reading to its final state",
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.download_delay = Histogram(
            "watcher_download_delay_seconds",
            "Seconds from a job seen SUCCEED to its files saved",
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.request_rate = Gauge(
            "watcher_api_requests_per_second", "API requests a second, over 10 s", registry=r
        )
        self.cadence = Gauge(
            "watcher_cadence_seconds", "Achieved seconds between readings of a job", registry=r
        )
        self.throttled = Gauge("watcher_throttled", "API answers 429 so far", registry=r)
        self.outage = Gauge("watcher_outage", "1 while a service is unreachable", registry=r)
        self.started = Gauge("watcher_run_start_time_seconds", "When the run started", registry=r)
        self.finished = Gauge(
            "watcher_run_end_time_seconds", "When the run ended (0 while running)", registry=r
        )
        self.exit_code = Gauge(
            "watcher_run_exit_code", "The run's exit code (-1 while running)", registry=r
        )
        self.last_success = Gauge(
            "watcher_last_success_time_seconds",
            "When a run last ended with every job SUCCEED (exit 0)",
            registry=r,
        )
        self.started.set(time.time())
        self.exit_code.set(-1)

    async def on_result(self, result: JobResult) -> None:
        """Count one manifest line (the `on_result` hook)."""
        self.jobs.labels(result.status).inc()
        if result.error is not None:
            self.failures.labels(result.error.code).inc()
        for saved in result.files.values():
            self.files.inc()
            self.bytes.inc(saved.bytes)
        if result.elapsed_s is not None:
            self.elapsed.observe(result.elapsed_s)
        if result.saved_at is not None and result.finished_at is not None:
            delay = (result.saved_at - result.finished_at).total_seconds()
            self.download_delay.observe(max(0.0, delay))

    def on_progress(self, s: Snapshot) -> None:
        """Take in one progress snapshot (the `on_progress` hook)."""
        self.admitted.set(s.admitted)
        for stage, count in (
            ("waiting", s.waiting + s.unseen),
            ("processing", s.processing),
            ("downloading", s.downloading),
        ):
            self.stage.labels(stage).set(count)
        self.request_rate.set(s.requests_per_s)
        if s.cadence_s is not None:
            self.cadence.set(s.cadence_s)
        self.throttled.set(s.throttled)
        self.outage.set(1 if s.outage else 0)

    def finish(self, exit_code: int) -> None:
        """The run is over with `exit_code`."""
        now = time.time()
        self.finished.set(now)
        self.exit_code.set(exit_code)
        if exit_code == 0:
            self.last_success.set(now)
        for stage in ("waiting", "processing", "downloading"):
            self.stage.labels(stage).set(0)


class Publisher:
    """Sends a Metrics registry where MetricsConfig says; see the module docstring."""

    def __init__(self, metrics: Metrics, config: MetricsConfig) -> None:
        self.metrics = metrics
        self.config = config
        self.port: int | None = None  # the bound port, once serving
        self._server: object | None = None

    @property
    def grouping_key(self) -> Mapping[str, str]:
        """The Pushgateway group: the batch, and the shard when sharded."""
        key = {"batch": self.config.batch}
        if self.config.shard is not None:
            key["shard"] = self.config.shard
        return key

    def serve(self) -> None:
        """Start serving `/metrics` on the configured port (0: any free one; see `port`)."""
        if self.config.port is None:
            return
        server, _thread = start_http_server(
            self.config.port, addr=self.config.host, registry=self.metrics.registry
        )
        self._server = server
        self.port = server.server_port

    def stop(self) -> None:
        """Stop serving."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]

    def push(self) -> None:
        """Push to the Pushgateway now (blocking; a failure is a warning)."""
        if not self.config.pushgateway:
            return
        try:
            push_to_gateway(
                self.config.pushgateway,
                job="watcher",
                registry=self.metrics.registry,
                grouping_key=dict(self.grouping_key),
                timeout=PUSH_TIMEOUT,
            )
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts; a bad URL
            log.warning(
                "metrics push failed", gateway=self.config.pushgateway, error=str(exc)[:300]
            )

    def write_textfile(self) -> None:
        """Write the textfile (blocking; a failure is a warning)."""
        if not self.config.textfile:
            return
        try:
            write_to_textfile(self.config.textfile, self.metrics.registry)
        except OSError as exc:
            log.warning("metrics textfile not written", path=self.config.textfile, error=str(exc))

    async def push_periodically(self) -> None:
        """Push every `push_interval` seconds until cancelled."""
        if not self.config.pushgateway:
            return
        while True:
            await anyio.sleep(self.config.push_interval)
            await anyio.to_thread.run_sync(self.push, abandon_on_cancel=True)

    def final(self, exit_code: int) -> None:
        """At the end of the run: record `exit_code`, push and write once more, stop serving."""
        self.metrics.finish(exit_code)
        self.push()
        self.write_textfile()
        self.stop()
