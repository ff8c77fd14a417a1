"""A quick pre-check of a batch of records against their stream's JSON schema.

singer-sdk validates every record with jsonschema, which costs more than everything else the
target does per row. Most records of a SQL tap are flat: every property is a plain ``type``
(``["integer", "null"]``, ``["string", "null"]`` ...). For those the check is a set of exact
types per column, taken over the whole batch at C speed. The check is one-sided: ``True`` means
every record is valid under the schema; ``False`` only means "not sure", and the caller then
checks record by record, running the SDK's own validator on the records the check is unsure of
(it accepts them or raises its usual error). Properties that are not plain types are checked
with a jsonschema validator for that property alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from itertools import repeat
from typing import Any

from singer_sdk.typing import DEFAULT_JSONSCHEMA_VALIDATOR

BatchCheck = Callable[[Sequence[dict[str, Any]]], bool]


# JSON Schema type -> the Python types a parsed record holds for it that are always valid.
# Deliberately narrow (no bool for integer, no float 1.0 for integer): anything else goes to
# the full validator.
_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "integer": frozenset({int}),
    "number": frozenset({int, float, Decimal}),
    "boolean": frozenset({bool}),
    "null": frozenset({type(None)}),
    "array": frozenset({list}),
    "object": frozenset({dict}),
}
# Keywords that never make a value invalid here: annotations, and "format" (the SDK does not
# check string formats: Sink.validate_field_string_format is False).
_ANNOTATIONS = frozenset(
    {
        "format",
        "description",
        "title",
        "examples",
        "default",
        "readOnly",
        "writeOnly",
        "deprecated",
        "$comment",
        "contentMediaType",
        "contentEncoding",
    }
)
_ROOT_KEYS = frozenset({"type", "properties", "required", "$schema", "description", "title"})


def type_names(prop: Mapping[str, Any]) -> Any:
    """The property's ``type`` as a list when it is one name (else as declared)."""
    declared = prop["type"]
    return [declared] if isinstance(declared, str) else declared


def plain_types(prop: Any) -> frozenset[type] | None:
    """The accepted Python types when ``prop`` is only a ``type`` plus annotations."""
    if not isinstance(prop, Mapping) or not set(prop) <= _ANNOTATIONS | {"type"}:
        return None
    if prop.get("type") is None:
        return None
    names = type_names(prop)
    if not isinstance(names, list) or not all(n in _TYPES for n in names):
        return None
    return frozenset().union(*(_TYPES[n] for n in names))


def _property_check(prop: Any) -> Callable[[Any], bool]:
    validator = DEFAULT_JSONSCHEMA_VALIDATOR(prop)  # no format checker: formats pass

    def is_valid(value: Any) -> bool:
        try:
            return bool(validator.is_valid(value))
        except Exception:  # e.g. a $ref into the root schema: let the full validator decide
            return False

    return is_valid


def plain_object(schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], tuple[str, ...]] | None:
    """``(properties, required)`` of a plain object schema, or None when the root says more
    (e.g. ``additionalProperties`` or ``$defs``)."""
    if not set(schema) <= _ROOT_KEYS or schema.get("type", "object") not in ("object", ["object"]):
        return None
    properties = schema.get("properties") or {}
    required = tuple(schema.get("required") or ())
    if not isinstance(properties, Mapping) or not all(isinstance(r, str) for r in required):
        return None
    return properties, required


def compile_batch_check(schema: Mapping[str, Any]) -> BatchCheck | None:
    """A quick check for ``schema``, or None when its root is not a plain object schema:
    then every record takes the full validator."""
    root = plain_object(schema)
    if root is None:
        return None
    properties, required = root
    typed: list[tuple[str, frozenset[type]]] = []
    other: list[tuple[str, Callable[[Any], bool]]] = []
    for name, prop in properties.items():
        types = plain_types(prop)
        if types is not None:
            typed.append((name, types))
        else:
            other.append((name, _property_check(prop)))

    def check(records: Sequence[dict[str, Any]]) -> bool:
        # A missing property counts as None here, so where null is not allowed a record
        # without that property is left to the full validator (which accepts it).
        try:
            for name, types in typed:
                if not types.issuperset(map(type, map(dict.get, records, repeat(name)))):
                    return False
            for name in required:
                if not all(map(dict.__contains__, records, repeat(name))):
                    return False
        except TypeError:  # a record that is not a dict
            return False
        for name, is_valid in other:
            for record in records:
                if name in record and not is_valid(record[name]):
                    return False
        return True

    return check
