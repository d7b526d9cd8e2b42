"""The public surface, `watcher.__all__`: every name resolves, the version is read without the
engine, and a library user's program type-checks under `mypy --strict` against `watcher` as it
is installed (py.typed), while misuse of the same names is reported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from mypy import api as mypy_api

import watcher

USER_PROGRAM = Path(__file__).with_name("check_public_api.py")
# Each line with a comment misuses the public API; mypy --strict must report it, with the code
# the comment names.
MISUSE = """\
from watcher import AkSk, ApiConfig, JobResult, RunConfig, Watcher

api = ApiConfig("https://metastudio.example", "project", "ak:sk")  # arg-type
config = RunConfig(api, "out", None)  # arg-type
keys = AkSk("ak", "sk")
keys.ak = "other"  # misc
from watcher import Poller  # attr-defined


async def read(w: Watcher, result: JobResult) -> int:
    async for r in w.watch([1, 2]):  # list-item
        pass
    return result.status  # return-value
"""


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One `mypy --strict` run over the user's program and the misuse file: error lines by file
    name. No project config is read, so it checks as a user's project would."""
    work = tmp_path_factory.mktemp("typing")
    misuse = work / "misuse.py"
    misuse.write_text(MISUSE)
    config = work / "mypy.ini"
    config.write_text("[mypy]\n")
    package_root = Path(watcher.__file__).parent.parent
    args = ["--strict", "--config-file", str(config), "--cache-dir", str(work / "cache")]
    args += ["--show-error-codes", "--no-error-summary", "--hide-error-context"]
    with pytest.MonkeyPatch.context() as patch:
        if "site-packages" not in package_root.parts:
            # An editable install is an import hook, which mypy does not follow: point it at
            # the checkout. An installed wheel is found in site-packages, through its py.typed.
            patch.chdir(package_root)
        stdout, stderr, _ = mypy_api.run([*args, str(USER_PROGRAM), str(misuse)])
    assert not stderr, stderr
    report: dict[str, list[str]] = {USER_PROGRAM.name: [], misuse.name: []}
    for line in stdout.splitlines():
        report.setdefault(Path(line.split(":", 1)[0]).name, []).append(line)
    return report


@pytest.mark.timeout(300)
def test_a_library_users_program_passes_mypy_strict(mypy_report: dict[str, list[str]]) -> None:
    """check_public_api.py (configs, a run with hooks, results, every error) has no error."""
    assert mypy_report[USER_PROGRAM.name] == []
    assert set(mypy_report) == {USER_PROGRAM.name, "misuse.py"}, mypy_report


@pytest.mark.timeout(300)
def test_misuse_of_the_public_api_is_reported(mypy_report: dict[str, list[str]]) -> None:
    """Each misuse line (wrong types, a frozen field set, an engine name) is a mypy error."""
    errors = mypy_report["misuse.py"]
    expected = {
        number: line.rsplit("# ", 1)[1]
        for number, line in enumerate(MISUSE.splitlines(), 1)
        if "  # " in line
    }
    found: dict[int, list[str]] = {}
    for error in errors:
        if ": error: " in error:
            found.setdefault(int(error.split(":")[1]), []).append(error)
    assert set(found) == set(expected), errors
    for number, code in expected.items():
        assert any(f"[{code}]" in e for e in found[number]), found[number]


def test_every_public_name_resolves_to_its_private_home() -> None:
    """Each name of __all__ is an attribute of watcher, and dir() and star-imports list them."""
    namespace: dict[str, object] = {}
    exec("from watcher import *", namespace)  # noqa: S102
    for name in watcher.__all__:
        value = getattr(watcher, name)
        assert namespace[name] is value
        if name != "__version__":
            assert getattr(value, "__module__", "").startswith("watcher._"), name
    assert set(watcher.__all__) <= set(dir(watcher))
    assert len(set(watcher.__all__)) == len(watcher.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A name outside the surface is no attribute: engine internals are not reachable so."""
    with pytest.raises(AttributeError, match="Poller"):
        _ = watcher.Poller  # type: ignore[attr-defined]


def test_the_version_is_read_without_importing_the_engine() -> None:
    """`import watcher; watcher.__version__` loads watcher._version alone: no engine module,
    no aiohttp; the first public name then brings its module."""
    code = (
        "import sys, watcher\n"
        "print(watcher.__version__)\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith(('watcher', 'aiohttp')))))\n"
        "watcher.RunConfig\n"
        "print('watcher._config' in sys.modules)\n"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    version, loaded, config_loaded = done.stdout.split()
    assert version == watcher.__version__ and version.count(".") >= 2
    assert loaded.split(",") == ["watcher", "watcher._version"]
    assert config_loaded == "True"


def test_the_names_type_checkers_read_are_the_names_loaded() -> None:
    """The TYPE_CHECKING imports (what type checkers read), the run-time homes and __all__ name
    the same names from the same modules: the three never drift apart."""
    tree = ast.parse(Path(watcher.__file__).read_text())
    [block] = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    checked = {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert checked == watcher._HOMES
    assert sorted([*checked, "__version__"]) == sorted(watcher.__all__)
