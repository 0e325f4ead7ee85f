"""llmrec: LLM-powered recommendation for cold start and many scenes.

The library holds all logic and imports no Ray; `deployments/` wraps these objects for Ray Serve.
"""

__version__ = "0.1.0"
