"""The import graph points one way: entry points -> commands -> the library (`watcher`) -> the
engine -> the API client and auth -> the base records; the simulator uses only the client side
and the base, never the engine or the commands. And what `watcher run` loads at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import watcher

PACKAGE = Path(watcher.__file__).parent

# Layers, lowest first: a module may import its own layer or a lower one, nothing above.
BASE = {"watcher._version", "watcher._errors", "watcher._inputs"}
CLIENT = {
    "watcher._auth",
    "watcher._credentials",
    "watcher._config",
    "watcher._retry",
    "watcher._ratelimit",
    "watcher._parse",
    "watcher._client",
}
LIBRARY = {"watcher"}
COMMANDS = {"watcher.cli", "watcher._options", "watcher._settings", "watcher._exits"}
ENTRY = {"watcher.__main__", "watcher.sim.__main__"}
RANKS = {"base": 0, "client": 1, "engine": 2, "sim": 2, "library": 3, "commands": 4, "entry": 5}


def layer(module: str) -> str:
    """The layer a module of the package belongs to (any other private module: the engine)."""
    if module in ENTRY:
        return "entry"
    if module in COMMANDS or module.startswith("watcher._commands"):
        return "commands"
    if module.startswith("watcher.sim"):
        return "sim"
    for name, members in (("base", BASE), ("client", CLIENT), ("library", LIBRARY)):
        if module in members:
            return name
    return "engine"


def _runtime_imports(tree: ast.Module) -> set[str]:
    """Modules of the package imported by this code, leaving out `if TYPE_CHECKING:` blocks
    (annotations only); `from watcher import _x` counts as `watcher._x`."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        guard = ast.unparse(node.test) if isinstance(node, ast.If) else ""
        if isinstance(node, ast.If) and guard in {"TYPE_CHECKING", "not TYPE_CHECKING"}:
            # the TYPE_CHECKING side is for type checkers only; the other side runs
            for statement in node.orelse if guard == "TYPE_CHECKING" else node.body:
                visit(statement)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "watcher":
                for alias in node.names:
                    private = alias.name.startswith("_") and alias.name != "__version__"
                    found.add(f"watcher.{alias.name}" if private else "watcher")
            elif node.module.split(".")[0] == "watcher":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "watcher")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[module] = _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))) - {module}
    return graph


def test_every_import_points_down_the_layers() -> None:
    """No module imports from a layer above its own (the engine never imports a command, the
    API client never imports the engine, nothing inside imports the public `watcher` package
    except the commands and entry points), and the simulator imports only the client side."""
    upward = []
    for module, imports in _graph().items():
        for target in imports:
            here, there = layer(module), layer(target)
            if here == "sim" and there == "engine":
                upward.append(f"{module} -> {target} (the simulator uses only the client side)")
            elif RANKS[there] > RANKS[here]:
                upward.append(f"{module} ({here}) -> {target} ({there})")
    assert not upward, "imports pointing up:\n" + "\n".join(sorted(upward))


def test_the_layer_table_can_catch_an_upward_import() -> None:
    """The check sees a command imported by the engine and the engine imported by the client."""
    tree = ast.parse("from watcher import _exits\nfrom watcher._poller import Poller\n")
    imports = _runtime_imports(tree)
    assert imports == {"watcher._exits", "watcher._poller"}
    assert RANKS[layer("watcher._exits")] > RANKS[layer("watcher._poller")]
    assert RANKS[layer("watcher._poller")] > RANKS[layer("watcher._client")]
    guarded = ast.parse(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import watcher.cli\n"
    )
    assert _runtime_imports(guarded) == set()


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


@pytest.mark.parametrize("module", ["watcher.sim.app", "watcher.sim.cli"])
def test_the_simulator_loads_no_engine_module_and_no_command(module: str) -> None:
    """At run time too: the simulator's modules pull in nothing of the engine or the commands."""
    loaded = {m for m in _modules_after(f"import {module}") if m.startswith("watcher")}
    wrong = {m for m in loaded if layer(m) in {"engine", "commands", "entry"}}
    assert not wrong
