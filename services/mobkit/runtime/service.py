"""``mobkit serve runtime``: the in-process reference runtime behind the AgentRuntimeService.

Configuration: the ``[profiles]`` TOML section maps roster profiles to agent kinds
(``coordinator = "notebook"``); a profile named like a built-in kind (``echo``,
``llm``, ``notebook``) needs no entry. The ``[llm]`` section and ``--llm-base-url``
configure the ``llm`` kind (:mod:`mobkit.runtime.agents.llm.settings`).
"""

from __future__ import annotations

from typing import Any

from mobkit.core.errors import InvalidArgument
from mobkit.gen.runtime.v1 import runtime_service_pb2_grpc as pb_grpc
from mobkit.runtime.agents import BUILTIN_AGENTS
from mobkit.runtime.agents.llm import from_section, llm_kind
from mobkit.runtime.local import LocalAgentRuntime
from mobkit.runtime.servicer import ERRORS, SERVICE_NAME, AgentRuntimeServicer
from mobkit.server.app import ServiceRegistration
from mobkit.server.config import Settings
from mobkit.server.resources import Resources


def profile_map(settings: Settings) -> dict[str, str]:
    raw: Any = settings.sections.get("profiles", {})
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise InvalidArgument("profiles", 'expected a table of profile = "agent kind"')
    return dict(raw)


def agent_kinds(settings: Settings) -> frozenset[str]:
    """The agent kinds this runtime offers with ``settings``: what roster profiles may name."""
    return LocalAgentRuntime(profiles=profile_map(settings)).agent_kinds


async def build(settings: Settings, resources: Resources) -> ServiceRegistration:
    profiles = profile_map(settings)
    llm = llm_kind(from_section(settings.sections.get("llm"), settings.llm_base_url))
    runtime = LocalAgentRuntime({**BUILTIN_AGENTS, "llm": llm}, profiles)
    unknown = sorted(p for p in profiles if not runtime.knows_profile(p))
    if unknown:
        raise InvalidArgument("profiles", f"unknown agent kind for profile {unknown[0]!r}")
    resources.providers["runtime"] = runtime  # the in-process orchestrator uses it directly
    servicer = AgentRuntimeServicer(runtime)
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: pb_grpc.add_AgentRuntimeServiceServicer_to_server(servicer, server),
        ERRORS,
    )
