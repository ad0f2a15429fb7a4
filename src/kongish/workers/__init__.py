"""Worker processes: one kongish node on every core, as nginx's master and workers.

The master (what ``twist kongish`` runs when ``nginx_worker_processes`` is
more than 1) owns the store, the Admin API and the proxy's listening sockets;
each worker is a process of its own (a reactor, a Lua VM, an upstream pool, a
router snapshot) that accepts on the inherited sockets and serves the proxy.
They talk over one control channel per worker (``control``).
"""
