"""The pytest plugin and background fibers: a fiber that ends with an exception nobody
retrieves fails the unknot test it ran in (a marked test, or one requesting a clock fixture),
with the fiber's traceback in the report, unless ``background_errors="log"`` says otherwise.

Each scenario runs in pytester (in-process): the test files it writes are named here, apart
from this module's own basename."""

from __future__ import annotations

import pytest
from fiber_helpers import call_outcomes

BACKGROUND = """
    import gc
    import pytest
    import unknot

    def explode():
        unknot.sleep(0)
        raise ValueError("boom-from-the-fiber")

    @pytest.mark.unknot
    def test_unretrieved_fails():
        unknot.spawn(explode, name="the-worker")
        unknot.sleep(0.01)

    @pytest.mark.unknot
    def test_unretrieved_at_exit_fails():
        unknot.spawn(explode, name="left-running")  # still running when the test returns

    @pytest.mark.unknot
    def test_collected_unretrieved_fails():
        f = unknot.spawn(explode, name="called-back")
        f.add_done_callback(lambda fiber: None)   # waited for, but its error never retrieved
        unknot.sleep(0.01)
        del f
        gc.collect()

    @pytest.mark.unknot
    def test_joined_passes():
        f = unknot.spawn(explode)
        with pytest.raises(ValueError):
            f.join()

    @pytest.mark.unknot
    def test_retrieved_after_it_ended_passes():
        # Logged when it ended (nobody was waiting), retrieved later: the test's own business.
        f = unknot.spawn(explode)
        unknot.sleep(0.01)
        assert f.done() and isinstance(f.exception(), ValueError)

    @pytest.mark.unknot
    def test_joined_one_after_the_other_passes():
        fibers = [unknot.spawn(explode) for _ in range(3)]
        for f in fibers:   # the second and third end while the test waits for the first
            with pytest.raises(ValueError):
                f.join()

    @pytest.mark.unknot
    def test_retrieved_in_a_callback_passes():
        seen = []
        f = unknot.spawn(explode)
        f.add_done_callback(lambda fiber: seen.append(fiber.exception()))
        unknot.sleep(0.01)
        del f
        gc.collect()
        assert isinstance(seen[0], ValueError)

    @pytest.mark.unknot
    def test_task_group_passes():
        with pytest.raises(ExceptionGroup):
            with unknot.TaskGroup() as tg:
                tg.spawn(explode)

    @pytest.mark.unknot(background_errors="log")
    def test_opted_out_passes(caplog):
        unknot.spawn(explode, name="only-logged")
        unknot.sleep(0.01)
        assert "only-logged" in caplog.text

    def test_clock_fixture_fails(autojump_clock):
        def main():
            unknot.spawn(explode, name="under-the-clock")
            unknot.sleep(60)
        unknot.run(main, clock=autojump_clock)

    def test_plain_test_is_not_an_unknot_test():
        def main():
            unknot.spawn(explode)
            unknot.sleep(0.01)
        unknot.run(main)

    @pytest.mark.unknot
    def test_own_failure_is_reported_as_such():
        unknot.spawn(explode)
        unknot.sleep(0.01)
        assert "own" == "failure"
"""


# The plugin's hooks as registered where pluggy has no new-style wrappers (before 1.1).
OLD_STYLE_CONFTEST = """
    import pytest
    from unknot import pytest_plugin as plugin

    pytest_addoption = plugin.pytest_addoption
    pytest_configure = plugin.pytest_configure
    pytest_pyfunc_call = plugin.pytest_pyfunc_call
    autojump_clock = plugin.autojump_clock
    mock_clock = plugin.mock_clock
    pytest_runtest_call = pytest.hookimpl(hookwrapper=True)(plugin._runtest_call_old_style)
"""


@pytest.mark.parametrize("style", ["new-style", "old-style"])
def test_unretrieved_fiber_errors_fail_unknot_tests(pytester: pytest.Pytester, style: str) -> None:
    # Before: every one of these passed, the fibers' errors only logged.
    pytester.makepyfile(test_background_fibers=BACKGROUND)
    options = ["-p", "no:cacheprovider", "-p", "no:randomly"]
    if style == "old-style":
        pytester.makeconftest(OLD_STYLE_CONFTEST)
        options += ["-p", "no:unknot"]
    result = pytester.runpytest(*options)
    result.assert_outcomes(passed=7, failed=5)
    outcomes = call_outcomes(result)
    assert outcomes == {
        "test_unretrieved_fails": "failed",
        "test_unretrieved_at_exit_fails": "failed",
        "test_collected_unretrieved_fails": "failed",
        "test_joined_passes": "passed",
        "test_retrieved_after_it_ended_passes": "passed",
        "test_joined_one_after_the_other_passes": "passed",
        "test_retrieved_in_a_callback_passes": "passed",
        "test_task_group_passes": "passed",
        "test_opted_out_passes": "passed",
        "test_clock_fixture_fails": "failed",
        "test_plain_test_is_not_an_unknot_test": "passed",
        "test_own_failure_is_reported_as_such": "failed",
    }
    out = result.stdout.str()
    # The report names the fiber and shows its traceback (the line that raised, in explode).
    result.stdout.fnmatch_lines(
        [
            "*ExceptionGroup: fiber the-worker (spawned at *test_background_fibers.py:11 in "
            "test_unretrieved_fails) ended with an exception nobody retrieved*",
            '*raise ValueError("boom-from-the-fiber")*',
            "*ValueError: boom-from-the-fiber*",
        ]
    )
    for name in ("left-running", "called-back", "under-the-clock"):
        assert f"ExceptionGroup: fiber {name} (spawned at " in out
    # A test that failed on its own keeps its own error.
    result.stdout.fnmatch_lines(["*AssertionError: assert 'own' == 'failure'*"])


def test_ini_option_leaves_them_logged(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nunknot_background_errors = log\n")
    pytester.makepyfile(
        test_background_ini="""
        import pytest
        import unknot

        def explode():
            raise ValueError("boom")

        @pytest.mark.unknot
        def test_logged_only(caplog):
            unknot.spawn(explode, name="logged-only")
            unknot.sleep(0.01)
            assert "logged-only" in caplog.text

        @pytest.mark.unknot(background_errors="fail")
        def test_marker_overrides_the_ini():
            unknot.spawn(explode, name="fails-anyway")
            unknot.sleep(0.01)

        @pytest.mark.unknot(background_errors="ignore")
        def test_unknown_mode():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*ExceptionGroup: fiber fails-anyway (spawned at *test_background_ini.py:15 in "
            "test_marker_overrides_the_ini) ended with an exception nobody retrieved*",
            "*unknot: background_errors must be 'fail' or 'log', not 'ignore'",
        ]
    )


def test_found_whatever_the_log_says(pytester: pytest.Pytester) -> None:
    # The plugin is told by the core (`lowlevel.add_unretrieved_hook`), not by the log: these
    # failed to fail while it read the ``unknot`` logger's records for their wording.
    pytester.makepyfile(
        test_background_unlogged="""
        import logging
        import pytest
        import unknot
        from unknot._core import _fiber

        def explode():
            raise ValueError("boom")

        def fail_in_background():
            unknot.spawn(explode, name="unseen")
            unknot.sleep(0.01)

        @pytest.mark.unknot
        def test_logging_disabled():
            logging.disable(logging.CRITICAL)
            try:
                fail_in_background()
            finally:
                logging.disable(logging.NOTSET)

        @pytest.mark.unknot
        def test_logger_filtered():
            logger = logging.getLogger("unknot")
            drop = lambda record: False
            logger.addFilter(drop)
            try:
                fail_in_background()
            finally:
                logger.removeFilter(drop)

        @pytest.mark.unknot
        def test_logger_level_raised():
            logger = logging.getLogger("unknot")
            level = logger.level
            logger.setLevel(logging.CRITICAL)
            try:
                fail_in_background()
            finally:
                logger.setLevel(level)

        class Reworded:
            # The core's logger, its message worded otherwise.
            def __init__(self, log):
                self.log = log

            def error(self, msg, *args, **kwargs):
                msg = msg.replace("Unhandled exception in fiber", "Fiber failed unnoticed:")
                self.log.error(msg, *args, **kwargs)

        @pytest.mark.unknot
        def test_reworded(monkeypatch, caplog):
            monkeypatch.setattr(_fiber, "log", Reworded(_fiber.log))
            fail_in_background()
            assert "Fiber failed unnoticed: unseen" in caplog.text

        @pytest.mark.unknot
        def test_hub_in_another_thread_passes():
            # As before: only the errors reported on the test's own thread count.
            import threading
            t = threading.Thread(target=unknot.run, args=(fail_in_background,))
            t.start()
            t.join(10)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=4)
    assert result.stdout.str().count("ExceptionGroup: fiber unseen (spawned at ") == 4
