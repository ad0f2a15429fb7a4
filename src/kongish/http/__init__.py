"""HTTP at the wire: what kongish needs of an HTTP client, with no Kong policy in it.

``kongish.http.interfaces`` is the seam between the proxy and whatever talks
HTTP/1.1 to upstream services: today ``kongish.http.client.UpstreamClient``
(Twisted's Agent), in tests ``kongish.testing.StubUpstream``.
"""
