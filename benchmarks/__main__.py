"""``python -m benchmarks NAME [args]`` (or ``./dev bench NAME``); no NAME lists them."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sys
from pathlib import Path


def _names() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def main() -> int:
    names = _names()
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print("usage: python -m benchmarks NAME [args]\navailable: " + ", ".join(names))
        return 0 if len(sys.argv) < 2 else 2
    module = importlib.import_module(f"benchmarks.{sys.argv[1]}")
    asyncio.run(module.main(sys.argv[2:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
