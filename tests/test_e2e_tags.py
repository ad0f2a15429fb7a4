"""``/tags`` and ``/tags/{tag}`` list ``{entity_name, entity_id, tag}`` rows, paged, as Kong does."""
from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.harness import deferred, start_gateway


class TagsTests(TestCase):
    @deferred
    async def test_rows_filtered_and_paged(self) -> None:
        gateway = await start_gateway(self)
        _, service, _ = await gateway.call("POST", "/services", json={
            "name": "s", "url": "http://127.0.0.1:1", "tags": ["team-a", "prod"]})
        _, route, _ = await gateway.call("POST", "/services/s/routes",
                                         json={"paths": ["/r"], "tags": ["prod"]})
        _, consumer, _ = await gateway.call("POST", "/consumers", json={"username": "untagged"})
        expected = sorted([("services", service["id"], "team-a"), ("services", service["id"], "prod"),
                           ("routes", route["id"], "prod")], key=lambda row: (row[1], row[0], row[2]))

        status, everything, _ = await gateway.call("GET", "/tags")
        self.assertEqual(status, 200)
        self.assertEqual([(r["entity_name"], r["entity_id"], r["tag"]) for r in everything["data"]], expected)
        self.assertIsNone(everything["next"])

        _, prod, _ = await gateway.call("GET", "/tags/prod")
        self.assertEqual(sorted((r["entity_name"], r["entity_id"]) for r in prod["data"]),
                         sorted([("services", service["id"]), ("routes", route["id"])]))
        self.assertEqual([r["tag"] for r in prod["data"]], ["prod", "prod"])
        self.assertNotIn(consumer["id"], [r["entity_id"] for r in everything["data"]])

        seen: list[tuple[str, str, str]] = []
        path = "/tags?size=1"
        while path:
            status, page, _ = await gateway.call("GET", path)
            self.assertEqual((status, len(page["data"])), (200, 1))
            seen.extend((r["entity_name"], r["entity_id"], r["tag"]) for r in page["data"])
            path = page["next"]
            if path:
                self.assertTrue(path.startswith("/tags?offset=") and path.endswith("&size=1"), path)
        self.assertEqual(seen, expected)

        _, first, _ = await gateway.call("GET", "/tags/prod?size=1")
        self.assertTrue(first["next"].startswith("/tags/prod?offset="), first)
        _, second, _ = await gateway.call("GET", first["next"])
        self.assertEqual([first["data"][0], second["data"][0]], prod["data"])
        self.assertIsNone(second["next"])

    @deferred
    async def test_bad_offset_size_and_tag(self) -> None:
        gateway = await start_gateway(self)
        status, body, _ = await gateway.call("GET", "/tags?offset=bm90IGpzb24")
        self.assertEqual((status, body["name"]), (400, "invalid offset"))
        status, body, _ = await gateway.call("GET", "/tags?size=0")
        self.assertEqual((status, body["name"]), (400, "invalid size"))
        status, body, _ = await gateway.call("GET", "/tags/a,b")
        self.assertEqual((status, body["name"]), (400, "invalid options"))
        status, body, _ = await gateway.call("GET", "/tags/unused")
        self.assertEqual((status, body), (200, {"data": [], "next": None}))
        status, _, _ = await gateway.call("POST", "/tags")
        self.assertEqual(status, 405)
