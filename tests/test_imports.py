"""What `watcher run` loads: not the simulator's server side."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


def test_the_command_line_does_not_load_aiohttp_web_or_the_simulator_app() -> None:
    """Building every parser (`watcher run` does) loads no aiohttp.web and no simulator app."""
    loaded = _modules_after("import watcher.cli; watcher.cli.build_parsers()")
    assert "aiohttp.web" not in loaded
    assert not {"watcher.sim.app", "watcher.sim.server", "watcher.sim.gateway"} & loaded
