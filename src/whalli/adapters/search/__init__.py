"""Web search APIs (the ``WebSearch`` port): SearXNG's JSON API and Brave Search, over httpx."""
