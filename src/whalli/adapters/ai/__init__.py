"""Chat model adapters: OpenAI-compatible and Anthropic streaming over httpx, and the dev echo."""

from whalli.adapters.ai._streaming import StreamPolicy

__all__ = ["StreamPolicy"]
