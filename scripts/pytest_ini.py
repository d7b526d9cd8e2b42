"""Print pyproject.toml's pytest settings as a pytest.ini, for running the suite outside the
checkout (`make test-wheel`)."""

from __future__ import annotations

import tomllib
from pathlib import Path

settings = tomllib.loads(Path(__file__).parent.parent.joinpath("pyproject.toml").read_text())
options = settings["tool"]["pytest"]["ini_options"]
print("[pytest]")
for key, value in options.items():
    if isinstance(value, list):
        print(f"{key} =")
        for item in value:
            print(f"    {item}")
    else:
        print(f"{key} = {value}")
