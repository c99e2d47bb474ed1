"""Fixtures of the reliability tests: the simulator in-process (as the pipeline's)."""

from __future__ import annotations

from tests.pipeline.conftest import sim

__all__ = ["sim"]
