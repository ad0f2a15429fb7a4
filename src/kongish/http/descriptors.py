"""The process's descriptor limit, raised at start as nginx's ``worker_rlimit_nofile`` does.

Every client connection, upstream connection and file takes a descriptor; at
the soft limit ``accept`` fails with EMFILE and the listener, the Admin API's
included, stops taking anyone. Raising the soft limit to the hard one needs no
privilege, so kongish does it before it listens.
"""
from __future__ import annotations

import resource

from twisted.logger import Logger

log = Logger()

#: Kong's ``auto``: ``ulimit -n``, bounded to 1024..16384 "to protect against excess memory use".
AUTO_CEILING = 16384
AUTO_FLOOR = 1024


def raise_descriptor_limit(wanted: int | None) -> int:
    """Set the soft ``RLIMIT_NOFILE`` to ``wanted`` (None: ``auto``) within the hard limit, never
    lowering it; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(hard, AUTO_FLOOR), AUTO_CEILING) if wanted is None else wanted
    if hard != resource.RLIM_INFINITY and target > hard:
        log.warn("nginx_main_worker_rlimit_nofile {wanted} is above the hard limit {hard}: using {hard}",
                 wanted=target, hard=hard)
        target = hard
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
