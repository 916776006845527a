"""The pytest plugin's clock fixtures, however a marked test requests them: as an argument, with
``@pytest.mark.usefixtures`` (on the function, its class, or the module's ``pytestmark``),
through an autouse fixture that depends on one, or a fixture that asks for one with
``request.getfixturevalue``. The test runs on that clock; two different clocks are an error.

Each scenario runs in pytester (in-process): the test files it writes are named here, apart
from this module's own basename."""

from __future__ import annotations

import pytest
from fiber_helpers import call_outcomes

# Each test checks first that it runs on a MockClock (whose time starts at 0; the real clock's
# is time.monotonic()), so that on the real clock it fails at once instead of sleeping.
REQUESTED = """
    import time
    import pytest
    import unknot

    def on_the_mock_clock():
        assert unknot.current_time() == 0, unknot.current_time()
        unknot.sleep(60)
        assert unknot.current_time() == 60, unknot.current_time()

    @pytest.mark.unknot
    def test_argument(autojump_clock):
        on_the_mock_clock()

    @pytest.mark.unknot
    @pytest.mark.usefixtures("autojump_clock")
    def test_usefixtures():
        on_the_mock_clock()

    @pytest.mark.unknot
    @pytest.mark.usefixtures("autojump_clock")
    class TestMarkedClass:
        def test_in_class(self):
            on_the_mock_clock()

    class TestAutouse:
        @pytest.fixture(autouse=True)
        def fast_time(self, autojump_clock):
            yield

        @pytest.mark.unknot
        def test_autouse_fixture_depends_on_it(self):
            on_the_mock_clock()

    @pytest.fixture
    def asks_for_the_clock(request):
        request.getfixturevalue("autojump_clock")
        return "not the clock itself"

    @pytest.mark.unknot
    def test_fixture_asks_for_it_by_name(asks_for_the_clock):
        on_the_mock_clock()

    @pytest.fixture
    def returns_the_clock(autojump_clock):
        return autojump_clock

    @pytest.mark.unknot
    def test_same_clock_twice(autojump_clock, returns_the_clock):
        on_the_mock_clock()

    @pytest.mark.unknot
    @pytest.mark.usefixtures("mock_clock")
    def test_usefixtures_mock_clock():
        assert unknot.current_time() == 0, unknot.current_time()
        time.sleep(0.01)                # the mock clock does not move by itself
        assert unknot.current_time() == 0, unknot.current_time()
"""

MODULE_MARK = """
    import pytest
    import unknot

    pytestmark = [pytest.mark.unknot, pytest.mark.usefixtures("autojump_clock")]

    def test_module_pytestmark():
        assert unknot.current_time() == 0, unknot.current_time()
        unknot.sleep(60)
        assert unknot.current_time() == 60
"""

TWO_CLOCKS = """
    import pytest
    import unknot

    @pytest.mark.unknot
    @pytest.mark.usefixtures("mock_clock")
    def test_two_clocks(autojump_clock):
        pass
"""


def test_clock_requested_any_way_is_used(pytester: pytest.Pytester) -> None:
    # Before: only an argument of the test function counted; the others ran on the real clock.
    pytester.makepyfile(test_clock_requested=REQUESTED, test_clock_module_mark=MODULE_MARK)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    outcomes = call_outcomes(result)
    assert outcomes == {
        "test_argument": "passed",
        "test_usefixtures": "passed",
        "test_in_class": "passed",
        "test_autouse_fixture_depends_on_it": "passed",
        "test_fixture_asks_for_it_by_name": "passed",
        "test_same_clock_twice": "passed",
        "test_usefixtures_mock_clock": "passed",
        "test_module_pytestmark": "passed",
    }, result.stdout.str()


def test_two_different_clocks_are_an_error(pytester: pytest.Pytester) -> None:
    # Before: the test silently ran on whichever came first.
    pytester.makepyfile(test_clock_two=TWO_CLOCKS)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*unknot: the test requests two different MockClocks (autojump_clock, mock_clock)*"]
    )


def test_clock_asked_for_by_name_makes_an_unknot_test(pytester: pytest.Pytester) -> None:
    # An unmarked test requesting a clock fixture is an unknot test (its fibers' unretrieved
    # errors fail it), also when a fixture asks for the clock by name.
    pytester.makepyfile(
        test_clock_by_name="""
        import pytest
        import unknot

        @pytest.fixture
        def clock_by_name(request):
            return request.getfixturevalue("autojump_clock")

        def explode():
            raise ValueError("boom")

        def test_unmarked(clock_by_name):
            def main():
                unknot.spawn(explode, name="by-name")
                unknot.sleep(60)
            unknot.run(main, clock=clock_by_name)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ExceptionGroup: fiber by-name (spawned at *"])
