"""The Admin API's twisted.web requests: bodies are left to kongish's own reader."""
from __future__ import annotations

from functools import partial

from twisted.web.server import Request

#: twisted.web's Request without its form parsing of POST bodies. The Admin API reads
#: every body itself (:mod:`kongish.admin.body`, as Kong reads them) and never looks at
#: ``request.args``; twisted.web's multipart parser fails on parts it does not know
#: (``name*=utf-8''name``) with an error that drops the connection unanswered, where Kong
#: answers 400.
admin_request = partial(Request, parsePOSTFormSubmission=False)
