"""``StubUpstream``, an in-memory ``IUpstreamClient`` (it lives in ``kongish.http.stub``, where
the Admin API's dry run answers from it too)."""

from kongish.http.stub import (
    BODY_ENDS,
    StubHandler,
    StubRequest,
    StubResponse,
    StubUpstream,
    StubUpstreamResponse,
)

__all__ = ["BODY_ENDS", "StubHandler", "StubRequest", "StubResponse", "StubUpstream", "StubUpstreamResponse"]
