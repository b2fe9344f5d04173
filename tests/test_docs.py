"""The API reference (`make docs`, built from the docstrings) covers everything public: every
class, function, method and property that a public module exports has a docstring."""

from __future__ import annotations

import importlib
import inspect
import typing

import pytest

PUBLIC_MODULES = ["realtalk", "realtalk.audio", "realtalk.connection", "realtalk.client",
                  "realtalk.conversation", "realtalk.errors", "realtalk.events",
                  "realtalk.simulator", "realtalk.relay", "realtalk.tokens", "realtalk.tools",
                  "realtalk.wav"]


def undocumented(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    assert module.__doc__, module_name
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if not callable(obj) or typing.get_origin(obj) is not None:
            continue  # constants and type aliases are described in their module's docstring
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                if member.startswith("_"):
                    continue
                if not (callable(value) or isinstance(value, (property, classmethod,
                                                              staticmethod))):
                    continue
                # getdoc follows the class's bases: an implementation of a documented
                # protocol method (relay.SessionStore) is documented by it.
                if not inspect.getdoc(getattr(obj, member)):
                    missing.append(f"{name}.{member}")
    return missing


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(module_name: str) -> None:
    assert undocumented(module_name) == []
