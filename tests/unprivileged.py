"""Run a test step where file permissions bind, and folders such a step can use.

``chmod`` does not stop root (``CAP_DAC_OVERRIDE``), and CI may run as root: there the step runs
in a forked child that drops to ``nobody`` first, so a folder made read-only with ``chmod`` is
read-only to it, as an image's model cache is under Kubernetes' ``readOnlyRootFilesystem``. A
fork, not a new interpreter: the interpreter and the checkout may sit where ``nobody`` cannot
read (``/root``). What the step needs must be imported before it runs, and it must not start
ONNX Runtime sessions (the parent's threads are not in the child).
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: ``nobody``: who a step runs as when the tests run as root.
NOBODY = 65534


def as_unprivileged(step: Callable[[], T]) -> T:
    """``step()`` run where ``chmod`` binds: here, or as root in a forked child as ``nobody``;
    -> its result (which must pickle). An exception in the child fails the test with the
    child's traceback."""
    if os.geteuid() != 0:
        return step()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            outcome: tuple[bool, object] = (True, step())
        except BaseException:
            outcome = (False, traceback.format_exc())
        try:
            with os.fdopen(write, "wb") as out:
                pickle.dump(outcome, out)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as incoming:
        data = incoming.read()
    os.waitpid(pid, 0)
    assert data, "the unprivileged child died without an answer"
    ok, value = pickle.loads(data)
    assert ok, f"in the unprivileged child:\n{value}"
    return value  # type: ignore[return-value]


def writable(path: Path) -> Path:
    """``path`` made (if missing) and writable to whoever :func:`as_unprivileged` runs as."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    return path


def read_only(path: Path) -> None:
    """Every folder under ``path`` (and it) ``r-x``, every file ``r--``: unwritable to anyone
    but root."""
    for folder, _, files in os.walk(path):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
        os.chmod(folder, 0o555)


@contextmanager
def open_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder ``nobody`` can reach (pytest's ``tmp_path`` is under a folder only its
    owner may enter), removed afterwards whatever was made read-only in it."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for folder, _, _ in os.walk(root):
            os.chmod(folder, 0o755)
        shutil.rmtree(root, ignore_errors=True)
