"""Routing: which route serves a request, and the upstream URL it leads to."""

from kongish.routing.normalize import normalize_path
from kongish.routing.router import Match, Router

__all__ = ["Match", "Router", "normalize_path"]
