"""The suite's own machinery: a shared fixture that hangs fails with its own message instead of
being charged to the first test that asked for it."""

from __future__ import annotations

import time

import pytest

from tests.conftest import bounded


def test_a_fixture_bound_fails_naming_what_hung():
    with pytest.raises(pytest.fail.Exception, match="fixture setup took over 1 s: napping"):
        with bounded(1, "napping"):
            time.sleep(5)
    start = time.monotonic()
    with bounded(2, "quick"):  # within its bound: nothing happens, and the alarm is cleared
        pass
    time.sleep(2.5)
    assert time.monotonic() - start >= 2.5


def test_the_per_test_limit_times_the_test_function_only(pytestconfig):
    assert pytestconfig.getini("timeout_func_only") is True
    assert float(pytestconfig.getini("timeout")) == 600
