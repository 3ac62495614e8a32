"""Start the ``[modules]`` of a served orchestrator (``serve orchestrator`` / ``all``, ``up``)."""

from __future__ import annotations

from pathlib import Path

from mobkit.modules.config import SECTION, parse_modules
from mobkit.modules.supervisor import Emit, ModuleSupervisor
from mobkit.server.config import Settings


async def start_modules(settings: Settings, emit: Emit) -> ModuleSupervisor:
    """Parse the section, start every module and return the supervisor (empty when
    there is no section). Raises ``ModuleStartFailed`` when a required module cannot
    start, ``InvalidArgument`` on a bad section. Module stderr goes to
    ``<data_dir>/modules/<id>.log``."""
    config = parse_modules(settings.sections.get(SECTION))
    supervisor = ModuleSupervisor(config, log_dir=Path(settings.data_dir) / "modules", emit=emit)
    await supervisor.start()
    return supervisor
