"""`watcher sim`: the simulator's flags, and the call that serves it until SIGINT or SIGTERM.

The flags' defaults are `SimConfig`'s (and the server's: 127.0.0.1, any free port). The
simulator's server side (`watcher.sim.server`, `aiohttp.web`) is imported only when this command
runs, so no other command loads it. Which credentials are accepted, the preload file and the
serving are `watcher.sim.cli`'s; errors (a bad `--fault`, credentials, preload file, a port that
cannot be bound) are raised for `watcher.cli.main` to report, exit 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from watcher._auth import AkSk
from watcher._errors import ConfigError
from watcher._options import DAY, PORT, number, positive
from watcher.sim.config import DEMO_AK, DEMO_PROJECT_ID, DEMO_SK, SimConfig
from watcher.sim.faults import DEFAULT_SLOW_SECONDS, Fault, plan_from_specs

FAULT_NAMES = ", ".join(Fault)
SIM = SimConfig(DEMO_PROJECT_ID, AkSk(DEMO_AK, DEMO_SK))  # the defaults of every flag below
# Where the server listens unless told: loopback only, any free port (printed on stdout).
HOST = "127.0.0.1"
ANY_PORT = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags to `parser`."""
    add = parser.add_argument
    add("--host", default=HOST, help=f"address to listen on (default {HOST})")
    add(
        "--port",
        type=PORT,
        default=ANY_PORT,
        help=f"port to listen on (default {ANY_PORT}: any free port)",
    )
    add("--seed", type=int, default=SIM.seed, help=f"seed for created job ids (default {SIM.seed})")
    add(
        "--time-scale",
        type=number(float, 0, 1000, low_open=False),
        default=SIM.time_scale,
        help=f"multiply every simulated duration (0.01 = 100x faster; default {SIM.time_scale:g})",
    )
    add(
        "--slots",
        type=positive(int, 10_000),
        default=SIM.slots,
        help=f"jobs synthesised at once (default {SIM.slots})",
    )
    add(
        "--url-ttl",
        type=positive(float, 7 * DAY),
        default=SIM.url_ttl,
        help=f"seconds a result link stays valid, real time (default {SIM.url_ttl:g})",
    )
    add(
        "--fail-percent",
        type=number(int, 0, 100, low_open=False),
        default=SIM.fail_percent,
        help=f"share of job ids that fail (default {SIM.fail_percent})",
    )
    add(
        "--rate-limit",
        type=positive(float, 1_000_000),
        default=SIM.rate_limit,
        help="requests per second per API before 429 APIGW.0308 (default: unlimited)",
    )
    add(
        "--fault",
        action="append",
        default=[],  # none: SimConfig's NO_FAULTS
        metavar="NAME=RATE",
        help=f"inject a fault at a rate from 0 to 1 (repeatable); NAME is one of {FAULT_NAMES}",
    )
    add(
        "--slow-seconds",
        type=number(float, -math.inf),  # finite; its range is checked with the fault plan
        default=None,
        help=f"real seconds a 'slow' fault delays an answer (default {DEFAULT_SLOW_SECONDS:g})",
    )
    add("--preload", metavar="FILE", help="job ids to know from the start (watcher input format)")
    add(
        "--storage-latency",
        type=number(float, 0, 60, low_open=False),
        default=SIM.storage_latency,
        help="seconds before the first byte of every storage answer "
        f"(default {SIM.storage_latency:g})",
    )
    add(
        "--storage-bandwidth",
        type=positive(float, 1e12),
        default=SIM.storage_bandwidth,
        help="bytes a second each storage download is sent at, at most (default: no cap)",
    )
    add(
        "--random-order",
        action="store_true",
        help="synthesise preloaded jobs in a random order (from --seed), not creation order",
    )
    add("--ak", help="accept this access key (with --sk) instead of the environment's")
    add("--sk", help="the secret key for --ak")
    add("--project-id", help="accept this project id")
    add("--token", help="accept this IAM token (X-Auth-Token) instead of AK/SK")


def run(args: argparse.Namespace) -> int:
    """Run the simulator described by `args` (from `add_arguments`) until SIGINT or SIGTERM; 0.

    Raises ConfigError for unusable flags, credentials, preload file or port."""
    from watcher.sim import cli as sim_cli  # the simulator: loaded by this command only

    err = sys.stderr
    credentials, project_id, notes = sim_cli.resolve_credentials(
        args, dict(os.environ), Path.home()
    )
    try:
        faults = plan_from_specs(args.fault, slow_seconds=args.slow_seconds)
        config = SimConfig(
            project_id=project_id,
            credentials=credentials,
            seed=args.seed,
            time_scale=args.time_scale,
            slots=args.slots,
            url_ttl=args.url_ttl,
            fail_percent=args.fail_percent,
            rate_limit=args.rate_limit,
            faults=faults,
            random_order=args.random_order,
            storage_latency=args.storage_latency,
            storage_bandwidth=args.storage_bandwidth,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    jobs = sim_cli.read_preload(args.preload, err) if args.preload else []
    if active := config.faults.active:
        rates = ", ".join(f"{fault}={rate:g}" for fault, rate in active.items())
        notes.append(f"{sim_cli.PROG}: injecting faults {rates} (seed {config.seed})")
    for note in notes:
        print(note, file=err)
    sim_cli.serve(config, jobs, args.host, args.port, sys.stdout, err)
    return 0
