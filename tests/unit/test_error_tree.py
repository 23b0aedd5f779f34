"""One error tree: every exception class the packages define descends from `CheckoutError`,
has a stable code, and is drawn in the docstring of its package's errors module.

Private classes (a leading underscore) are control flow inside one module and never leave it;
they are the only exception."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import events
import events.errors
import orchestrator
import orchestrator.errors
import projections
import projections.errors
from events.errors import CheckoutError

PACKAGES = (events, orchestrator, projections)
DRAWINGS = {
    "events": events.errors.__doc__ or "",
    "orchestrator": orchestrator.errors.__doc__ or "",
    "projections": projections.errors.__doc__ or "",
}


def _exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for _, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == info.name:
                    found[f"{value.__module__}.{value.__qualname__}"] = value
    return sorted(found.values(), key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


CLASSES = _exception_classes()
PUBLIC = [cls for cls in CLASSES if not cls.__name__.startswith("_")]


def test_the_walk_finds_the_tree():
    names = {cls.__name__ for cls in PUBLIC}
    assert {"ProviderError", "AllProvidersFailed", "InvalidRules", "NatsRefused"} <= names
    assert {"CommandRejected", "DuplicateCommand", "EmbeddedServerError", "QueryError"} <= names


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_public_exception_is_in_the_tree_with_a_code(cls: type[BaseException]) -> None:
    assert issubclass(cls, CheckoutError), f"{cls.__module__}.{cls.__name__} is outside the tree"
    code = cls.code
    assert isinstance(code, str)
    assert code
    assert code.replace("_", "").isalpha()
    assert code.islower()
    if cls is not CheckoutError:
        parent_codes = {base.code for base in cls.__mro__[1:] if issubclass(base, CheckoutError)}
        own = cls.__dict__.get("code")
        assert own is not None, f"{cls.__name__} has no own code"
        assert own is None or own not in parent_codes - {"internal_error"}, (
            f"{cls.__name__} repeats an ancestor's code {own}"
        )


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_public_exception_is_drawn(cls: type[BaseException]) -> None:
    drawing = DRAWINGS[cls.__module__.split(".")[0]]
    assert cls.__name__ in drawing, f"{cls.__name__} is not drawn in its errors module"
    assert cls.code in drawing or cls.__name__ == "CheckoutError" or cls.code in DRAWINGS["events"]


def test_private_exceptions_stay_private():
    private = [cls for cls in CLASSES if cls.__name__.startswith("_")]
    for cls in private:
        module = importlib.import_module(cls.__module__)
        assert cls.__name__ not in getattr(module, "__all__", ()), cls
