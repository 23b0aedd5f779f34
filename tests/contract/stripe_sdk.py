"""What the ``stripe`` SDK publishes about the wire, generated from Stripe's OpenAPI spec.

- `param_errors`: a request's (form-decoded) parameters against the SDK's ``TypedDict``
  for that call (``stripe.params.checkout.SessionCreateParams``, ...): unknown keys at
  any depth and required keys left out.
- `documented_error_codes`: the ``code`` values Stripe documents for API errors (the
  ``Literal`` of ``api_errors.code`` the SDK carries on ``PaymentIntent.LastPaymentError``).
"""

from __future__ import annotations

import inspect
import re
import sys
from functools import cache
from typing import Any

import stripe

__all__ = ["documented_error_codes", "param_errors"]

_NAME = re.compile(r"[A-Za-z_]\w*")
# headers and options the SDK takes beside the parameters (never form-encoded)
_REQUEST_OPTIONS = frozenset(stripe.RequestOptions.__annotations__)


def _nested(owner: type, annotation: str) -> type | None:
    names = vars(sys.modules[owner.__module__])
    for name in _NAME.findall(annotation):
        candidate = names.get(name)
        if isinstance(candidate, type) and hasattr(candidate, "__required_keys__"):
            return candidate
    return None


def param_errors(params: Any, schema: type, where: str = "") -> list[str]:
    """Every key the SDK's params type does not know, and every required key missing."""
    if not isinstance(params, dict):
        return []
    annotations = {
        key: value for key, value in schema.__annotations__.items() if key not in _REQUEST_OPTIONS
    }
    problems = [f"{where}{key}: unknown parameter" for key in params if key not in annotations]
    for key, annotation in annotations.items():
        text = repr(annotation)
        if key not in params:
            if "NotRequired" not in text:
                problems.append(f"{where}{key}: required parameter missing")
            continue
        nested = _nested(schema, text)
        if nested is None:
            continue
        values = params[key] if isinstance(params[key], list) else [params[key]]
        for index, value in enumerate(values):
            suffix = f"[{index}]" if isinstance(params[key], list) else ""
            problems += param_errors(value, nested, f"{where}{key}{suffix}.")
    return problems


@cache
def documented_error_codes() -> frozenset[str]:
    source = inspect.getsource(stripe.PaymentIntent.LastPaymentError)
    block = source.split("\n        code: ", 1)[1].split('"""', 1)[0]
    return frozenset(re.findall(r'"([a-z0-9_]+)"', block))
