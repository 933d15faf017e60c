"""The exception tree: every exception lives in errors.py, drawn in its docstring, and the ones that
moved there are still importable from where they were defined before."""

from __future__ import annotations

import importlib
import inspect

import pytest

from tfa_middleware import errors

EXCEPTIONS = [
    cls
    for cls in vars(errors).values()
    if inspect.isclass(cls) and issubclass(cls, Exception) and cls.__module__ == errors.__name__
]


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: cls.__name__)
def test_every_exception_is_drawn_in_the_tree(cls: type[Exception]) -> None:
    assert errors.__doc__ is not None
    assert f" {cls.__name__} " in errors.__doc__ or f" {cls.__name__}\n" in errors.__doc__
    assert issubclass(cls, errors.TwoFactorError)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("tfa_middleware.service", "EnrollmentNotAllowed"),
        ("tfa_middleware.forms", "FormTooLarge"),
        ("tfa_middleware.asgi", "HostilePath"),
    ],
)
def test_moved_exceptions_are_the_same_class_at_their_old_location(module: str, name: str) -> None:
    moved = getattr(errors, name)
    assert getattr(importlib.import_module(module), name) is moved
    # Every `except InvalidInput` and `except ValueError` that caught it before still does.
    assert issubclass(moved, errors.InvalidInput)
    assert issubclass(moved, ValueError)
