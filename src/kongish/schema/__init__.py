"""kongish's entity schemas and the field DSL that plugins use for their ``config``.

Validation follows ``kong.db.schema`` closely so that error bodies match
Kong's: see ``complete`` for the insert/update path and ``infer`` for form
bodies.
"""
from kongish.schema.checks import (
    AtLeastOneOf,
    Conditional,
    ConditionalAtLeastOneOf,
    FieldErrors,
    MutuallyExclusiveSets,
)
from kongish.schema.complete import complete
from kongish.schema.entities import CONSUMERS, ENTITIES, PLUGINS, ROUTES, SERVICES, EntitySchema, PluginLookup
from kongish.schema.fields import (
    MISSING,
    Array,
    Boolean,
    EntityCheck,
    Field,
    Foreign,
    Integer,
    Map,
    Number,
    Record,
    Set,
    String,
)
from kongish.schema.infer import infer
from kongish.schema.render import schema_json

__all__ = [
    "AtLeastOneOf", "Conditional", "ConditionalAtLeastOneOf", "EntityCheck", "FieldErrors",
    "MutuallyExclusiveSets", "complete", "CONSUMERS", "ENTITIES", "PLUGINS", "ROUTES", "SERVICES",
    "EntitySchema", "PluginLookup", "MISSING", "Array", "Boolean", "Field", "Foreign", "Integer",
    "Map", "Number", "Record", "Set", "String", "infer", "schema_json",
]
