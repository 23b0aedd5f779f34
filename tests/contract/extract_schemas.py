"""Re-extract the provider schema subsets under ``tests/contract/schemas`` from published specs.

Not part of the product, and not run by the tests: a maintainer runs it after fetching the
providers' repositories (bare git dirs) to refresh the subsets, e.g.::

    python tests/contract/extract_schemas.py polar /path/to/polarsource+polar/repo

Each output file holds the named roots (JSON pointers into the spec) and the closure of the
``#/components/...`` references they use, so the file is a self-contained JSON document
(`tests/contract/schemas.py` resolves ``$ref`` inside it). ``x-source`` records the
repository, path and commit it came from; ``x-pruned`` lists references replaced by
``{"type": "object"}`` to keep the subset small (objects we never validate in depth).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent / "schemas"

_PROBLEM = "content/application~1problem+json/schema"


def _schemas(*names: str) -> dict[str, str]:
    return {name: f"/components/schemas/{name}" for name in names}


# provider -> (repository, path in it, {output name: {root alias: JSON pointer}}, pruned refs)
SOURCES: dict[str, tuple[str, str, dict[str, dict[str, str]], set[str]]] = {
    "polar": (
        "polarsource/polar",
        "docs/openapi/2026-10.openapi.json",
        {
            "checkout": _schemas(
                "Checkout",
                "CheckoutCreate",
                "CheckoutUpdate",
                "ListResource_Checkout_",
                "HTTPValidationError",
                "ResourceNotFound",
                "AlreadyActiveSubscriptionError",
            ),
            "webhooks": _schemas(
                "WebhookCheckoutCreatedPayload",
                "WebhookCheckoutUpdatedPayload",
                "WebhookCheckoutExpiredPayload",
                "WebhookOrderPaidPayload",
            ),
        },
        {"#/components/schemas/Organization", "#/components/schemas/Benefit"},
    ),
    "lomi": (
        "kamayakoi/lomi.",
        "apps/docs/openapi.json",
        {
            "checkout": {
                "CheckoutSessionCreate": "/paths/~1checkout-sessions/post/requestBody/content/"
                "application~1json/schema",
                **_schemas("CheckoutSessionResponseDto"),
            },
        },
        set(),
    ),
    "kong": (
        "openmeterio/openmeter",
        "api/v3/openapi.yaml",
        {
            "checkout": {
                "CreateCheckoutSessionRequest": "/components/schemas/"
                "BillingCustomerStripeCreateCheckoutSessionRequest",
                "CreateCheckoutSessionResult": "/components/schemas/"
                "BillingAppStripeCreateCheckoutSessionResult",
                "BadRequest": f"/components/responses/BadRequest/{_PROBLEM}",
                "NotFound": f"/components/responses/NotFound/{_PROBLEM}",
                "Unauthorized": f"/components/responses/Unauthorized/{_PROBLEM}",
                "Gone": f"/components/responses/Gone/{_PROBLEM}",
            },
        },
        set(),
    ),
}


def _pointer(document: Any, pointer: str) -> Any:
    node = document
    for part in pointer.lstrip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(value) for value in node))
    return set()


def _prune(node: Any, pruned: set[str]) -> Any:
    if isinstance(node, dict):
        if node.get("$ref") in pruned:
            return {"type": "object", "x-pruned": node["$ref"]}
        return {key: _prune(value, pruned) for key, value in node.items()}
    if isinstance(node, list):
        return [_prune(value, pruned) for value in node]
    return node


def subset(spec: Any, roots: dict[str, str], pruned: set[str]) -> dict[str, Any]:
    """The roots and the closure of the component references they use."""
    chosen = {alias: _prune(_pointer(spec, pointer), pruned) for alias, pointer in roots.items()}
    components: dict[str, dict[str, Any]] = {}
    todo = set().union(*(_refs(root) for root in chosen.values()))
    while todo:
        ref = todo.pop()
        section, name = ref.split("/")[2:4]  # "#/components/<section>/<name>"
        bucket = components.setdefault(section, {})
        if name in bucket:
            continue
        bucket[name] = _prune(_pointer(spec, ref[1:]), pruned)
        todo |= _refs(bucket[name])
    return {"roots": chosen, "components": components}


# Stripe's spec3.json (several MB) is not in the stored snapshot of stripe/openapi; its
# fixtures3.json, generated from the same spec at the same commit (stripe-mock serves it),
# is. The Stripe subset is therefore derived from the fixtures: every key a fixture object
# carries is required, and a non-null fixture value fixes the JSON type (null stays allowed,
# as the spec marks most of these fields nullable).
STRIPE_FIXTURES = ("stripe/openapi", "openapi/fixtures3.json")
STRIPE_RESOURCES = {
    "checkout.session": "checkout.session",
    "item": "item",
    "price": "price",
    "customer": "customer",
    "event": "event",
}
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
# a checkout session's expandable references (Stripe's x-expansionResources): an id or the
# expanded object, so the fixture's string does not fix their type
STRIPE_EXPANDABLE = (
    "customer",
    "invoice",
    "payment_intent",
    "payment_link",
    "setup_intent",
    "subscription",
)


def shape(value: Any, *, top: bool = True) -> dict[str, Any]:
    """A JSON Schema requiring the keys and types of a fixture value (null always allowed)."""
    if isinstance(value, dict):
        schema: dict[str, Any] = {
            "type": "object",
            "required": sorted(value),
            "properties": {k: shape(v, top=False) for k, v in value.items()},
        }
    elif isinstance(value, list):
        schema = {"type": "array", "items": shape(value[0], top=False) if value else {}}
    elif value is None:
        return {}
    else:
        schema = {"type": _JSON_TYPES[type(value)]}
    return schema if top else {"anyOf": [schema, {"type": "null"}]}


def stripe_main(git_dir: str) -> None:
    repository, path = STRIPE_FIXTURES
    commit = _git(git_dir, "rev-parse", "HEAD").decode().strip()
    resources = json.loads(_git(git_dir, "show", f"HEAD:{path}"))["resources"]
    roots = {alias: shape(resources[name]) for alias, name in STRIPE_RESOURCES.items()}
    for field in STRIPE_EXPANDABLE:
        roots["checkout.session"]["properties"][field] = {"type": ["string", "object", "null"]}
    # the event fixture wraps a plan: keep the envelope, let data.object be any object
    roots["event"]["properties"]["data"] = {"type": "object", "required": ["object"]}
    target = HERE / "stripe"
    target.mkdir(parents=True, exist_ok=True)
    document = {
        "x-source": {
            "repository": repository,
            "path": path,
            "commit": commit,
            "derived": "required keys and JSON types of each fixture object",
        },
        "roots": roots,
        "components": {},
    }
    (target / "checkout.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


def _git(git_dir: str, *args: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", git_dir, *args], capture_output=True, check=True
    ).stdout


def main(provider: str, git_dir: str) -> None:
    if provider == "stripe":
        stripe_main(git_dir)
        return
    repository, path, outputs, pruned = SOURCES[provider]
    commit = _git(git_dir, "rev-parse", "HEAD").decode().strip()
    raw = _git(git_dir, "show", f"HEAD:{path}")
    spec = json.loads(raw) if path.endswith(".json") else yaml.safe_load(raw)
    target = HERE / provider
    target.mkdir(parents=True, exist_ok=True)
    for name, roots in outputs.items():
        document = {
            "x-source": {
                "repository": repository,
                "path": path,
                "commit": commit,
                "openapi": spec.get("openapi"),
                "version": spec["info"].get("version"),
            },
            "x-pruned": sorted(pruned),
            **subset(spec, roots, pruned),
        }
        (target / f"{name}.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
