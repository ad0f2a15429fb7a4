"""Routing: which route serves a request, and the upstream URL it leads to."""

from kongish.router.normalize import normalize_path
from kongish.router.router import Match, Router

__all__ = ["Match", "Router", "normalize_path"]
