"""`python -m watcher.sim`: run the simulator (the same as `watcher sim`)."""

from __future__ import annotations

from watcher.sim.cli import main

raise SystemExit(main())
