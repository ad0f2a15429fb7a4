"""kongish: a Kong-compatible API gateway on Twisted.

The public surface for composing kongish into a Twisted application::

    from kongish import KongishService, Settings, UpstreamClient, build_node
    from kongish import admin_resource, proxy_resource

They load on first use, so that importing one of kongish's modules does not import
all of them.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: The Kong release whose behaviour kongish follows; it appears in ``Server`` and ``Via``.
KONG_VERSION = "3.9.0"

#: Public name -> the module that defines it.
_PUBLIC = {
    "KongishService": "kongish.service",
    "build_node": "kongish.service",
    "proxy_resource": "kongish.service",
    "admin_resource": "kongish.service",
    "Settings": "kongish.settings",
    "UpstreamClient": "kongish.http.client",
}

__all__ = ["KONG_VERSION", "__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'kongish' has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name]), name)
