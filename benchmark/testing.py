"""Pytest helpers for method authors: run the conformance checks in your own test suite.

Like scikit-learn's ``parametrize_with_checks``, :func:`parametrize_with_checks` turns every
check into its own test with a readable id (``my-method-check_trains_a_few_steps``)::

    from mlrpl_bench.testing import parametrize_with_checks
    from my_package.method import MyMethod

    @parametrize_with_checks([MyMethod])
    def test_conformance(method, check):
        check(method)

A check that fails raises an ``AssertionError`` whose message says what to fix. A check the
method opted out of (``conformance_skip = {"check_name": "reason"}``) is reported as skipped with
its reason; a check blocked by another failing check is skipped and names that check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .conformance import CHECKS, CheckSkipped, check_method, skip_reason
from .plugin_manager import method_class
from .conformance_harness import single_thread
from .method import Method

__all__ = ["parametrize_with_checks", "assert_conforms"]


class PytestCheck:
    """One conformance check bound to option overrides; calling it runs the check under pytest."""

    def __init__(self, check: Callable[..., None], options: dict[str, Any] | None = None):
        self.check = check
        self.options = options
        self.__name__ = check.__name__
        self.__doc__ = check.__doc__

    def __call__(self, method: str | type[Method]) -> None:
        import pytest

        try:
            with single_thread():
                self.check(method_class(method), self.options)
        except CheckSkipped as exc:
            pytest.skip(str(exc))

    def __repr__(self) -> str:
        return self.__name__


def parametrize_with_checks(methods: Iterable[str | type[Method]], *, options: dict[str, Any] | None = None):
    """A ``pytest.mark.parametrize`` over (method, check) for every method and every check.

    :param methods: method classes or registered names.
    :param options: option overrides used by every check (on top of ``conformance_options``).
    :return: a decorator for a test function taking ``method`` and ``check`` arguments.
    """
    import pytest

    params = []
    for method in methods:
        cls = method_class(method)
        label = getattr(cls, "name", "") or cls.__name__
        for check in CHECKS:
            reason = skip_reason(cls, check.__name__)
            marks = [pytest.mark.skip(reason=f"opted out: {reason}")] if reason else []
            params.append(pytest.param(cls, PytestCheck(check, options), id=f"{label}-{check.__name__}", marks=marks))
    return pytest.mark.parametrize("method, check", params)


def assert_conforms(method: str | type[Method], *, options: dict[str, Any] | None = None) -> None:
    """Run every check and raise one ``AssertionError`` listing all failures (for a single test)."""
    check_method(method, options=options, raise_on_failure=True)

