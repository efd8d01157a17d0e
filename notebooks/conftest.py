"""nbval settings for the lessons: the sanitize file by default, and stderr never compared.

Cells tagged ``nbval-check-output`` compare their stdout and results with the stored run after
``sanitize.cfg`` has replaced what changes from run to run; this file supplies it when
``--nbval-sanitize-with`` is not given, so ``pytest --nbval-lax notebooks/`` works from any
folder. What goes to stderr (warnings, progress bars, a library's log lines) differs between
machines and versions, so it is left out of the comparison; nbval 0.11 has no option for that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SANITIZE = Path(__file__).with_name("sanitize.cfg")


def pytest_configure(config: pytest.Config) -> None:
    """Use notebooks/sanitize.cfg unless another sanitize file was given."""
    if getattr(config.option, "nbval_sanitize_with", "absent") is None:
        config.option.nbval_sanitize_with = str(SANITIZE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Add stderr to what nbval skips when it compares a cell's outputs."""
    try:
        from nbval.plugin import IPyNbFile
    except ImportError:  # nbval not installed: no notebook is collected
        return
    for item in items:
        parent = item.parent
        if isinstance(parent, IPyNbFile) and "stderr" not in parent.skip_compare:
            parent.skip_compare = (*parent.skip_compare, "stderr")
