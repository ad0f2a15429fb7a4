"""trusted_ips is checked when the settings load, naming the setting."""
from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kongish.settings import ConfigError, Settings


class TrustedIpsTests(SynchronousTestCase):
    def load(self, value: str) -> Settings:
        return Settings.load(environ={}, overrides={"trusted_ips": value})

    def test_networks_and_addresses_accepted(self) -> None:
        settings = self.load("10.0.0.0/8, ::1, 0.0.0.0/0,::/0")
        self.assertEqual(settings.raw["trusted_ips"], "10.0.0.0/8, ::1, 0.0.0.0/0,::/0")

    def test_invalid_entry_names_the_setting(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            self.load("10.0.0.0/8, not-an-ip")
        self.assertTrue(str(raised.exception).startswith("trusted_ips: "))
        self.assertIn("not-an-ip", str(raised.exception))

    def test_none_means_no_trusted_addresses(self) -> None:
        self.load("NONE")
