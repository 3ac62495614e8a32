"""Built-in agents: ``echo``, the deterministic ``notebook``, and ``llm`` (a model's)."""

from __future__ import annotations

from mobkit.runtime.agents.echo import EchoAgent
from mobkit.runtime.agents.llm import LlmAgent
from mobkit.runtime.agents.notebook import NotebookAgent
from mobkit.runtime.sdk import AgentFactory

BUILTIN_AGENTS: dict[str, AgentFactory] = {a.kind: a for a in (EchoAgent, LlmAgent, NotebookAgent)}
