"""Errors as text that every log format keeps.

``twist`` writes JSON lines when its output is not a terminal, and an exception in a
JSON event is ``{"unpersistable": true}``. Handlers therefore log a failure with an
``error`` field that is already a string: the exception's message and, when the code
that failed reports a stack of its own (a Lua error's ``traceback``), that stack.
"""
from __future__ import annotations

from twisted.python.failure import Failure


def error_text(failure: Failure) -> str:
    value = failure.value
    stack = getattr(value, "traceback", "")
    if isinstance(stack, str) and stack:
        return f"{value}\n{stack.strip()}"
    return f"{type(value).__name__}: {value}"
