"""docs/settings.rst stays true: it names every setting kongish reads."""
from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from kongish.settings import DEFAULTS

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "settings.rst")


class SettingsReferenceTests(SynchronousTestCase):
    def test_every_setting_is_documented(self) -> None:
        with open(DOCS, encoding="utf-8") as reference:
            text = reference.read()
        self.assertEqual([name for name in DEFAULTS if f"``{name}``" not in text], [])
