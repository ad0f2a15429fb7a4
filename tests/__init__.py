"""kongish's tests.

Hypothesis runs every property under one profile: no per-example deadline and no
too-slow health check (a loaded machine must not fail a property that holds), and in
CI (``CI`` set) a fixed seed and no example database, so a CI run draws exactly what
the last CI run drew and never replays a failure saved by another run.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("kongish", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("kongish-ci", parent=settings.get_profile("kongish"), derandomize=True,
                          database=None)
settings.load_profile("kongish-ci" if os.environ.get("CI") else "kongish")
