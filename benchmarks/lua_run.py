"""Microseconds per ``LuaEngine.run`` of the seed demo's pre-function, against bare lupa.

Three timings of the same Lua code, in this same run:

  engine: ``LuaEngine.run`` with the real PDK on a parsed request
          (``GET /test?name=kong``), budget hook, sandbox and all;
  execute: ``lua.execute(code)`` on a bare LuaJIT runtime whose ``ngx`` is a
          stub table written in Lua (compiles the code on every call);
  call:   the same bare runtime calling the code compiled once.

Prints µs per run for each and the ratios engine/execute and engine/call.
With ``--profile`` it also prints cProfile's view of the engine runs.
Usage (from the repository root): PYTHONPATH=src:. python benchmarks/lua_run.py [--runs 20000] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable
from typing import cast

from lupa import luajit21
from twisted.internet.task import Clock

from kongish.http.interfaces import IProxiedRequest
from kongish.lua.engine import LuaEngine
from kongish.lua.settings import LuaSettings
from kongish.runloop.context import RequestContext
from tests.test_lua_pdk import parse_request

SEED_CODE = ("local qs=ngx.req.get_uri_args()if qs and qs.name then ngx.say('Hello '..qs.name..'!')"
             "else ngx.say('Hello Serverless Functions!')end;ngx.exit(200)")

STUB_NGX = b"""
ngx = {req = {get_uri_args = function() return {name = "kong"} end},
       say = function(...) return 1 end, exit = function(status) end}
"""

REQUEST = b"GET /test?name=kong HTTP/1.1\r\nHost: localhost\r\n\r\n"


def per_run(runs: int, step: Callable[[int], object]) -> float:
    """Best of three passes, in µs per call."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for index in range(runs):
            step(index)
        best = min(best, (time.perf_counter() - started) / runs * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20000)
    parser.add_argument("--profile", action="store_true")
    options = parser.parse_args()

    engine = LuaEngine(LuaSettings(), Clock())
    functions = engine.load([SEED_CODE])
    contexts = [RequestContext(cast(IProxiedRequest, parse_request(REQUEST)), phase="access")
                for _ in range(options.runs)]

    def engine_run(index: int) -> None:
        context = contexts[index]
        context.response.body.clear()
        engine.run(functions, context, "pre-function", "id-1")

    engine_run(0)
    assert b"".join(contexts[0].response.body) == b"Hello kong!\n", contexts[0].response.body

    bare = luajit21.LuaRuntime(encoding=None, register_eval=False)
    bare.execute(STUB_NGX)
    compiled = bare.compile(SEED_CODE.encode())
    source = SEED_CODE.encode()

    engine_us = per_run(options.runs, engine_run)
    execute_us = per_run(options.runs, lambda index: bare.execute(source))
    call_us = per_run(options.runs, lambda index: compiled())
    print(f"engine.run     {engine_us:8.2f} µs/run")
    print(f"lua.execute    {execute_us:8.2f} µs/run   engine/execute {engine_us / execute_us:5.2f}")
    print(f"compiled call  {call_us:8.2f} µs/run   engine/call    {engine_us / call_us:5.2f}")

    if options.profile:
        profiler = cProfile.Profile()
        def every_run() -> None:
            for index in range(options.runs):
                engine_run(index)
        profiler.runcall(every_run)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
