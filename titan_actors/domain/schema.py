"""Request models: one declaration that both validates and documents, pure.

A `Model` is a named list of `Field`s. `Model.problem(obj)` checks what a
sender put in a JSON object against each field's kind and bounds, in the
order declared, and returns the first problem as `"<field>: <reason>"` (the
FastPath `INVALID` reason, the HTTP `422` reason); `Model.json_schema()` is
the same declaration as JSON Schema (2020-12, as OpenAPI 3.1 uses it). The
HTTP API's `/openapi.json` is built from these models, so what is documented
is what is checked.

Rules that tie fields together (a limit order needs a price; `side` or
`direction`) stay in the parser that uses the model, and are named in the
model's `doc`.

Failure: `problem` never raises on anything JSON can hold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = ["Field", "Model"]

_KINDS = ("string", "integer", "number", "boolean", "numbers", "object")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    return not isinstance(value, float) or math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a request. `kind` is one of string, integer, number,
    boolean, numbers (a list of numbers) or object. `positive` means > 0;
    `minimum`/`maximum` are inclusive; `nullable` admits JSON null (as absent)."""

    name: str
    kind: str
    doc: str
    required: bool = False
    enum: tuple[Any, ...] = ()
    pattern: str = ""
    min_length: int = 0
    max_length: int = 0
    minimum: int | Decimal | None = None
    maximum: int | Decimal | None = None
    positive: bool = False
    min_items: int = 0
    max_items: int = 0
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}")

    def problem(self, value: Any) -> str | None:
        """Why `value` is not a valid value of this field, or None."""
        if value is None and self.nullable:
            return None
        if self.enum:
            if any(value == e and type(value) is type(e) for e in self.enum):
                return None
            return f"must be one of {', '.join(str(e) for e in self.enum)}"
        match self.kind:
            case "string":
                if not isinstance(value, str):
                    return "must be a string"
                if len(value) < self.min_length:
                    return "missing" if not value else f"must be at least {self.min_length} characters"
                if self.max_length and len(value) > self.max_length:
                    return f"must be a string of at most {self.max_length} characters"
                if self.pattern and not re.fullmatch(self.pattern, value):
                    return f"must match {self.pattern}"
            case "integer":
                if not _is_int(value):
                    return "must be an integer"
                return self._bounds(value)
            case "number":
                if not _is_number(value):
                    return "must be a number"
                return self._bounds(value)
            case "boolean":
                if not isinstance(value, bool):
                    return "must be true or false"
            case "numbers":
                if not isinstance(value, list) or not self.min_items <= len(value) <= (
                        self.max_items or len(value)):
                    return f"must be a list of {self._items_text()} numbers"
                for i, item in enumerate(value):
                    if not _is_number(item) or self._bounds(item):
                        return f"[{i}]: {self._bounds(item) if _is_number(item) else 'must be a number'}"
            case "object":
                if not isinstance(value, dict):
                    return "must be a JSON object"
        return None

    def _items_text(self) -> str:
        if self.max_items:
            return f"{self.min_items} to {self.max_items}"
        return f"at least {self.min_items}"

    def _bounds(self, value: Any) -> str | None:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        if self.positive and number <= 0:
            return "must be a finite number > 0"
        if self.minimum is not None and number < self.minimum:
            return f"must be at least {self.minimum}"
        if self.maximum is not None and number > self.maximum:
            return f"{number:g} is above the limit {self.maximum:g}"
        return None

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"description": self.doc}
        if self.enum:
            schema["enum"] = list(self.enum)
        elif self.kind == "numbers":
            schema.update(type="array", items=self._number_schema("number"), minItems=self.min_items)
            if self.max_items:
                schema["maxItems"] = self.max_items
        elif self.kind in ("integer", "number"):
            schema.update(self._number_schema(self.kind))
        else:
            schema["type"] = self.kind
            if self.pattern:
                schema["pattern"] = f"^(?:{self.pattern})$"
            if self.min_length:
                schema["minLength"] = self.min_length
            if self.max_length:
                schema["maxLength"] = self.max_length
        if self.nullable:
            plain = {k: v for k, v in schema.items() if k != "description"}
            return {"description": self.doc, "anyOf": [plain, {"type": "null"}]}
        return schema

    def _number_schema(self, kind: str) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": kind}
        if self.positive:
            schema["exclusiveMinimum"] = 0
        if self.minimum is not None:
            schema["minimum"] = _json_number(self.minimum)
        if self.maximum is not None:
            schema["maximum"] = _json_number(self.maximum)
        return schema


def _json_number(value: int | Decimal) -> int | Decimal:
    """An integral bound as a JSON integer; any other stays exact (written by `json_default`)."""
    return value if isinstance(value, int) else int(value) if value == value.to_integral() else value


@dataclass(frozen=True, slots=True)
class Model:
    """A request body (or a query string): its fields, and whether fields
    it does not name are allowed (`extra`)."""

    name: str
    doc: str
    fields: tuple[Field, ...]
    extra: bool = False

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def problem(self, obj: Mapping[str, Any], *, skip: frozenset[str] = frozenset()) -> str | None:
        """The first field of `obj` that is missing or invalid, as
        `"<field>: <reason>"`; None when every field is valid. Fields in
        `skip` are left to the caller."""
        for field in self.fields:
            if field.name in skip:
                continue
            if field.name not in obj:
                if field.required:
                    return f"{field.name}: missing"
                continue
            problem = field.problem(obj[field.name])
            if problem is not None:
                return f"{field.name}{'' if problem.startswith('[') else ': '}{problem}"
        if not self.extra:
            unknown = sorted(set(obj) - {f.name for f in self.fields})
            if unknown:
                return f"{unknown[0]}: unknown field"
        return None

    def json_schema(self) -> dict[str, Any]:
        return {
            "title": self.name, "description": self.doc, "type": "object",
            "properties": {f.name: f.json_schema() for f in self.fields},
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": self.extra,
        }
