"""The example team ``mobkit up`` runs when given no ``--roster`` and no ``--config``.

``roster.toml`` (a coordinator and three workers) and ``mobkit.toml`` (their
topology, customizer rules and the ``clock`` module) ship inside the package, so
an installed wheel and the Docker image run the same example as a checkout;
``examples/`` in the source tree links to these files.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib.resources import as_file, files
from pathlib import Path

ROSTER = "roster.toml"
CONFIG = "mobkit.toml"

# A zipped install extracts a file for as long as the process runs (the roster
# provider keeps reading it); a plain install hands out the file itself.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def example_path(name: str) -> Path:
    """A filesystem path of the packaged example file ``name`` (ROSTER or CONFIG)."""
    return _extracted.enter_context(as_file(files(__name__) / name))
