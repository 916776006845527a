"""The pytest plugin: the ``unknot`` marker runs a test as the root fiber of a fresh hub,
with the ``autojump_clock`` and ``mock_clock`` fixtures; failures are reported and
coroutine tests rejected.

Not named test_pytest_plugin.py: pytester names the file it writes after the test
function, and two test modules of one basename cannot both be imported."""

from __future__ import annotations

import pytest


def test_pytest_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest
        import unknot

        @pytest.mark.unknot
        def test_in_fiber():
            assert unknot.current() is not None
            unknot.sleep(0.001)

        @pytest.mark.unknot
        def test_autojump(autojump_clock):
            t0 = time.monotonic()
            unknot.sleep(3600)
            assert unknot.current_time() == 3600
            assert time.monotonic() - t0 < 5

        @pytest.mark.unknot
        def test_mock_clock(mock_clock):
            mock_clock.jump(7)
            assert unknot.current_time() == 7

        @pytest.mark.unknot
        @pytest.mark.parametrize("n", [1, 2])
        def test_parametrized(n, tmp_path, autojump_clock):
            unknot.sleep(n)
            assert unknot.current_time() == n
            assert tmp_path.exists()

        def test_unmarked():
            assert unknot.current() is None

        @pytest.mark.unknot
        def test_failure_is_reported():
            unknot.sleep(0)
            assert 1 == 2

        @pytest.mark.unknot
        async def test_coroutine_rejected():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=2)
    result.stdout.fnmatch_lines(
        ["*test_failure_is_reported*", "*test_coroutine_rejected*TypeError*"]
    )


def test_arguments_named_like_run_parameters_reach_the_test(pytester: pytest.Pytester) -> None:
    # The arguments were passed as keywords of unknot.run(fn, *, clock, **kwargs): a fixture
    # named ``clock`` (or a parameter named ``fn``) made the call a TypeError.
    pytester.makepyfile(
        """
        import pytest
        import unknot

        @pytest.fixture
        def clock():
            return "the wall clock"

        @pytest.mark.unknot
        def test_a_fixture_named_clock(clock):
            assert clock == "the wall clock"
            unknot.sleep(0)

        @pytest.mark.unknot
        @pytest.mark.parametrize("fn", [len])
        def test_a_parameter_named_fn(fn, autojump_clock):
            unknot.sleep(60)
            assert fn("ab") == 2 and unknot.current_time() == 60
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
