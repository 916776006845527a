"""A test not marked ``unknot`` that requests a clock fixture (``autojump_clock``,
``mock_clock``) does not run in a fiber: it may start a hub on that clock itself
(``unknot.run(main, clock=autojump_clock)``), but if no hub ever runs on it the clock was
silently ignored and the test's unknot calls took real time. Such a test fails, saying how to
mark it; one that failed on its own keeps its error, with that hint added as a note.

Each scenario runs in pytester (in-process): the test files it writes are named here, apart
from this module's own basename."""

from __future__ import annotations

import pytest
from fiber_helpers import call_outcomes

UNMARKED = """
    import pytest
    import unknot

    def test_sleeps_outside_a_fiber(autojump_clock):
        unknot.sleep(0.01)                      # real time: the clock is ignored

    @pytest.mark.usefixtures("mock_clock")
    def test_usefixtures_outside_a_fiber():
        unknot.sleep(0.01)

    def test_runs_a_hub_on_another_clock(autojump_clock):
        unknot.run(unknot.sleep, 0.01)          # forgot clock=autojump_clock

    def test_fails_on_its_own(autojump_clock):
        assert unknot.current() is not None, "not in a fiber"

    def test_runs_a_hub_on_it(autojump_clock):
        unknot.run(unknot.sleep, 60, clock=autojump_clock)
        assert autojump_clock.time() == 60

    def test_a_fixture_runs_a_hub_on_it(hub_ran_on_the_clock):
        pass

    @pytest.fixture
    def hub_ran_on_the_clock(request):
        clock = request.getfixturevalue("mock_clock")
        unknot.run(unknot.sleep, 0, clock=clock)

    def test_uses_the_clock_itself(mock_clock):
        mock_clock.jump(2)
        assert mock_clock.time() == 2

    def test_no_clock():
        unknot.sleep(0)

    @pytest.mark.unknot
    def test_marked(autojump_clock):
        unknot.sleep(60)
        assert unknot.current_time() == 60

    @pytest.fixture
    def my_own_clock():
        from unknot.testing import MockClock
        return MockClock()

    def test_a_clock_of_its_own_is_not_checked(my_own_clock):
        pass
"""


def test_an_unmarked_test_whose_clock_no_hub_ran_on_fails(pytester: pytest.Pytester) -> None:
    # Before: the first three passed, their clock silently ignored (their sleeps in real time).
    pytester.makepyfile(test_clock_unmarked=UNMARKED)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    outcomes = call_outcomes(result)
    assert outcomes == {
        "test_sleeps_outside_a_fiber": "failed",
        "test_usefixtures_outside_a_fiber": "failed",
        "test_runs_a_hub_on_another_clock": "failed",
        "test_fails_on_its_own": "failed",
        "test_runs_a_hub_on_it": "passed",
        "test_a_fixture_runs_a_hub_on_it": "passed",
        "test_uses_the_clock_itself": "passed",
        "test_no_clock": "passed",
        "test_marked": "passed",
        "test_a_clock_of_its_own_is_not_checked": "passed",
    }, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*_ test_sleeps_outside_a_fiber _*",
            "unknot: the test requests the autojump_clock fixture, but no hub ran on that clock:*"
            "took real time*Mark the test @pytest.mark.unknot*"
            "unknot.run(main, clock=autojump_clock)*",
            "*_ test_usefixtures_outside_a_fiber _*",
            "unknot: the test requests the mock_clock fixture, but no hub ran on that clock:*",
            "*_ test_runs_a_hub_on_another_clock _*",
            "unknot: the test requests the autojump_clock fixture*",
            "*_ test_fails_on_its_own _*",
            "*AssertionError: not in a fiber*",
            "*unknot: the test requests the autojump_clock fixture, but no hub ran on that clock*",
        ]
    )


AUTOUSE = """
    import pytest
    import unknot

    @pytest.fixture(autouse=True)
    def clock_for_every_test(autojump_clock):
        return autojump_clock

    def test_plain_code_beside_a_clock_it_never_asked_for():
        assert 1 + 1 == 2

    @pytest.mark.unknot
    def test_marked_on_that_clock():
        unknot.sleep(60)
        assert unknot.current_time() == 60
"""


def test_a_clock_only_an_autouse_fixture_asks_for_is_not_checked(
    pytester: pytest.Pytester,
) -> None:
    # A conftest's autouse fixture may give a clock to every test: the unmarked ones that never
    # asked for it (plain code, no unknot at all) must not fail for not running a hub on it.
    pytester.makepyfile(test_clock_autouse=AUTOUSE)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    assert call_outcomes(result) == {
        "test_plain_code_beside_a_clock_it_never_asked_for": "passed",
        "test_marked_on_that_clock": "passed",
    }, result.stdout.str()
