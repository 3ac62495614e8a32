"""The ``llm`` agent kind: turns answered by any OpenAI-compatible Chat Completions
endpoint (OpenAI, vLLM, Ollama, llama.cpp's server, LiteLLM)."""

from mobkit.runtime.agents.llm.agent import LlmAgent, llm_kind
from mobkit.runtime.agents.llm.settings import LlmSettings, from_section

__all__ = ["LlmAgent", "LlmSettings", "from_section", "llm_kind"]
