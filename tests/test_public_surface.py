"""``kongish``'s public names: each is the object its module defines, loaded on first use."""
from __future__ import annotations

import importlib

from twisted.trial.unittest import SynchronousTestCase

import kongish


class PublicSurfaceTests(SynchronousTestCase):
    def test_every_public_name_resolves(self) -> None:
        for name in kongish.__all__:
            self.assertIs(getattr(kongish, name), getattr(importlib.import_module(
                kongish._PUBLIC.get(name, "kongish")), name))

    def test_unknown_names_are_attribute_errors(self) -> None:
        self.assertRaises(AttributeError, getattr, kongish, "no_such_thing")
