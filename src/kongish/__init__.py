"""kongish: a Kong-compatible API gateway on Twisted."""

__version__ = "0.1.0"

#: The Kong release whose behaviour kongish follows; it appears in ``Server`` and ``Via``.
KONG_VERSION = "3.9.0"
