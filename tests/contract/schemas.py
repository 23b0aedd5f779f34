"""The providers' published schema subsets (``schemas/<provider>/*.json``) as validators.

Each file is a self-contained JSON document written by `extract_schemas.py`: named
``roots`` plus the ``components`` they reference, with ``x-source`` naming the repository,
path and commit. Stripe's, lomi's and OpenMeter's specs are OpenAPI 3.0, where ``nullable:
true`` sits beside a type: it becomes ``anyOf [schema, null]`` here. Polar's is 3.1 (plain
JSON Schema 2020-12).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["Contract", "contract"]

HERE = Path(__file__).parent / "schemas"
_BASE = "urn:contract"


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema ``anyOf [..., {"type": "null"}]``."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable(value) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [converted, {"type": "null"}]} if node.get("nullable") is True else converted


def _null_allowed(root: dict[str, Any]) -> dict[str, Any]:
    """Every property of ``root`` may also be null (required keys stay required)."""
    properties = {
        key: {"anyOf": [schema, {"type": "null"}]} for key, schema in root["properties"].items()
    }
    return {**root, "properties": properties}


class Contract:
    """One schema file; `errors(root, instance)` lists what a payload breaks.

    ``nullable_roots`` names roots whose spec lost its nullability (lomi's generated
    spec marks nothing nullable while its API answers rows with null columns).
    """

    def __init__(self, provider: str, name: str, nullable_roots: tuple[str, ...] = ()) -> None:
        path = HERE / provider / f"{name}.json"
        self.document: dict[str, Any] = _nullable(json.loads(path.read_text()))
        for root in nullable_roots:
            self.document["roots"][root] = _null_allowed(self.document["roots"][root])
        self.source: dict[str, Any] = self.document["x-source"]
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_BASE, resource)

    def errors(self, root: str, instance: Any) -> list[str]:
        if root not in self.document["roots"]:
            raise KeyError(f"no root {root!r} in {self.source}")
        validator = Draft202012Validator(
            {"$ref": f"{_BASE}#/roots/{root}"}, registry=self._registry
        )
        found = sorted(validator.iter_errors(instance), key=lambda error: list(error.absolute_path))
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]

    def assert_valid(self, root: str, instance: Any) -> None:
        problems = self.errors(root, instance)
        assert not problems, f"{root} breaks {self.source['repository']}:\n" + "\n".join(
            problems[:25]
        )


@cache
def contract(
    provider: str, name: str = "checkout", nullable_roots: tuple[str, ...] = ()
) -> Contract:
    return Contract(provider, name, nullable_roots)
