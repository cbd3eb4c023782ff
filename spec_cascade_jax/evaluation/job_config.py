"""Helpers shared by the gin jobs (`runner.run_eval`, `decode_job.run_decode`).

`pkg://` paths (resolved inside the installed `spec_cascade_jax` package, for the bundled demo
data) and checks of gin-required and positive-integer arguments, so a bad setting fails before
any data or weights are loaded.
"""

from __future__ import annotations

import os
from typing import Any

import gin

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG_PREFIX = "pkg://"


def resolve_path(path: str | None) -> str | None:
    """`pkg://x/y` -> `<spec_cascade_jax package dir>/x/y`; other paths unchanged."""
    if path is None:
        return None
    path = os.fspath(path)
    if path.startswith(PKG_PREFIX):
        return os.path.join(PACKAGE_DIR, path[len(PKG_PREFIX) :])
    return os.path.expanduser(path)


# Where each gin-required argument usually comes from, for error messages.
MACRO_OF = {
    "task": "TASK",
    "output_dir": "OUTPUT_DIR",
    "drafter": "DRAFTER",
    "verifier": "VERIFIER",
    "vocab_path": "VOCAB_PATH",
    "preset": "the model file (models/*.gin)",
}


def check_required(fn, **values: Any) -> None:
    """Raises ValueError naming every argument still set to `gin.REQUIRED` (or None).

    Gin passes a macro bound to `%gin.REQUIRED` through as the `gin.REQUIRED` sentinel instead of
    failing, so each job checks its required arguments itself before doing any work.
    """
    missing = [name for name, value in values.items() if value is gin.REQUIRED or value is None]
    if missing:
        hints = ", ".join(
            f"{fn.__name__}.{m} (macro {MACRO_OF.get(m, m.upper())})" for m in missing
        )
        raise ValueError(f"required settings are missing: {hints}")


def check_positive_ints(**values: Any) -> None:
    """Raises ValueError naming the first value that is not an integer >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
