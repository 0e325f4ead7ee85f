"""What every stage deployment adds to its llmrec stage object: a readiness answer."""

from __future__ import annotations


class Ready:
    def ready(self) -> bool:
        """Answers once `__init__` has loaded the models and indexes (the ingress's /readyz asks)."""
        return True
