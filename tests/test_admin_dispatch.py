"""The Admin API endpoint table: matching, precedence and Kong's endpoint names."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kongish.admin.dispatch import Endpoint, EndpointTable
from kongish.admin.resource import admin_endpoint_table


async def handler(call):
    return 200, None


def table(*templates: str) -> EndpointTable:
    return EndpointTable(tuple(Endpoint(t, {"GET": handler}) for t in templates))


class EndpointTests(SynchronousTestCase):
    def test_match_names_parameters(self) -> None:
        endpoint = Endpoint("/services/{services}/routes/{routes}", {"GET": handler})
        self.assertEqual(endpoint.match(["services", "s", "routes", "r"]), {"services": "s", "routes": "r"})
        self.assertIsNone(endpoint.match(["services", "s", "plugins", "r"]))
        self.assertIsNone(endpoint.match(["services", "s", "routes"]))

    def test_allowed_adds_head_and_options(self) -> None:
        self.assertEqual(Endpoint("/x", {"POST": handler, "GET": handler}).allowed,
                         ["GET", "HEAD", "OPTIONS", "POST"])
        self.assertEqual(Endpoint("/x", {"POST": handler}).allowed, ["OPTIONS", "POST"])


def _found(endpoints: EndpointTable, segments: list[str]) -> tuple[Endpoint, dict[str, str]]:
    """``endpoints.find(segments)``, which must match."""
    found = endpoints.find(segments)
    assert found is not None
    return found


class TableTests(SynchronousTestCase):
    def test_literal_segments_win(self) -> None:
        found = table("/plugins/{plugins}", "/plugins/enabled").find(["plugins", "enabled"])
        assert found is not None
        self.assertEqual((found[0].template, found[1]), ("/plugins/enabled", {}))
        schemas = table("/schemas/{db_entity_name}/validate", "/schemas/plugins/{name}",
                        "/schemas/plugins/validate")
        self.assertEqual(_found(schemas, ["schemas", "plugins", "validate"])[0].template,
                         "/schemas/plugins/validate")
        self.assertEqual(_found(schemas, ["schemas", "plugins", "x"])[0].template, "/schemas/plugins/{name}")
        self.assertEqual(_found(schemas, ["schemas", "routes", "validate"])[0].template,
                         "/schemas/{db_entity_name}/validate")

    def test_no_match(self) -> None:
        self.assertIsNone(table("/services").find(["routes"]))
        self.assertIsNone(table("/").find(["x"]))
        self.assertEqual(_found(table("/"), [])[0].template, "/")

    def test_templates_sort_by_segment(self) -> None:
        self.assertEqual(table("/a-b", "/a/z", "/a", "/ab").templates(), ["/a", "/a/z", "/a-b", "/ab"])

    def test_kong_endpoint_names(self) -> None:
        templates = admin_endpoint_table().templates()
        for template in ("/services/{services}", "/services/{services}/routes/{routes}",
                         "/routes/{routes}/service", "/consumers/{consumers}/plugins/{plugins}",
                         "/plugins/{plugins}/route", "/plugins/{plugins}/service",
                         "/plugins/{plugins}/consumer",
                         "/schemas/{name}", "/schemas/plugins/{name}", "/config", "/status", "/endpoints"):
            self.assertIn(template, templates)
        self.assertEqual(len(templates), len(set(templates)))


_LITERALS = {segment for template in admin_endpoint_table().templates()
             for segment in template.split("/") if segment and not segment.startswith("{")}
_VALUES = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="/"), min_size=1,
                  max_size=12).filter(lambda value: value not in _LITERALS)


class AdminTableProperties(SynchronousTestCase):
    @given(st.sampled_from(admin_endpoint_table().endpoints), st.data())
    def test_every_template_dispatches_to_itself(self, endpoint: Endpoint, data) -> None:
        """Filled with values that are not literal segments, a template finds itself and its values."""
        values = {}
        segments = []
        for segment in endpoint.segments:
            if segment.startswith("{"):
                values[segment[1:-1]] = data.draw(_VALUES)
                segments.append(values[segment[1:-1]])
            else:
                segments.append(segment)
        result = admin_endpoint_table().find(segments)
        assert result is not None
        found, params = result
        self.assertEqual((found.template, params), (endpoint.template, values))

    @given(st.lists(st.text(max_size=8), max_size=6))
    def test_find_never_fails(self, segments: list[str]) -> None:
        found = admin_endpoint_table().find(segments)
        if found is not None:
            self.assertEqual(found[0].match(segments), found[1])
