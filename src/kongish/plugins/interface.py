"""What a kongish plugin is: a named, prioritised set of phase handlers."""
from __future__ import annotations

from zope.interface import Attribute, Interface


class IPlugin(Interface):
    """A plugin type, as listed by ``/plugins/enabled`` and ``/schemas/plugins/{name}``.

    One provider exists per plugin name; ``configure`` turns one plugin entity
    (an Admin API dict) into the handlers that run for requests.
    """

    name = Attribute("The plugin name used in the Admin API, e.g. 'pre-function'.")
    priority = Attribute("Higher runs first within each phase (Kong's PRIORITY).")
    version = Attribute("The plugin version string shown by GET /.")
    config_schema = Attribute("A kongish.schema Record describing ``config``.")
    comma_escaped_fields = Attribute(
        "``config`` field names whose Admin API form values read Kong 0.14's ``\\,`` escape "
        "as ``,`` (the serverless plugins' code fields); empty for most plugins.")
    consumer_scoped = Attribute(
        "False for a plugin that runs for every consumer and refuses a ``consumer`` scope "
        "(Kong's ``typedefs.no_consumer``).")

    def check_entity(entity):
        """Return field errors for the whole plugin entity (e.g. consumer must be null), or {}."""

    def configure(entity):
        """Return an IPluginHandlers for one plugin entity (called once per config version)."""


class IPluginHandlers(Interface):
    """The request-time side of one configured plugin entity."""

    phases = Attribute("frozenset of the phase names this instance handles.")

    def run(phase, context):
        """Run one phase for one request.

        ``context`` is a kongish.runloop.context.RequestContext. Return ``None`` when
        done, or a Deferred that fires when done. To end the request, call
        ``context.exit(...)``. An exception (or failed Deferred) is an unexpected error: the
        request ends with 500 and the error is logged.
        """

    def close():
        """Release what ``configure`` made; called when the entity changes or is deleted."""


class IPluginHost(Interface):
    """What the node lends a plugin: given to the factory a plugin registers.

    A plugin keeps what it needs of it; nothing here is per request.
    """

    reactor = Attribute("The node's reactor: timers (IReactorTime) and outbound connections.")
    settings = Attribute("The node's kongish.settings.Settings, parsed once at start.")
    http = Attribute("A treq.HTTPClient for calls the plugin makes to other services; its "
                     "persistent connections are the node's and close when the node stops.")

    def logger(name):
        """A twisted.logger.Logger whose events name the plugin (namespace ``kongish.plugins.<name>``)."""
