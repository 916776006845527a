"""The sleeper from "Missing coroutines in Common Lisp", written in blocking style.

In continuation-passing style the rest of ``my_app`` has to become a callback handed to
``sleeper``. With fibers ``sleeper()`` simply blocks: it suspends only the fiber that called it,
``my_app`` resumes on the same call stack, and while it sleeps the event loop is free to run other
fibers (here a ticker).

    python examples/sleeper.py          # sleeps 2 s, like the original
    python examples/sleeper.py 0.2      # any duration in seconds
"""

import sys
import traceback

import unknot


def sleeper(seconds: float) -> None:
    unknot.sleep(seconds)  # blocks this fiber only; the loop keeps running the others
    # We are back on the very stack we left: my_app -> sleeper.
    frames = [f.name for f in traceback.extract_stack() if f.filename == __file__]
    print("Woke up inside " + " -> ".join(frames))


def my_app(seconds: float) -> None:
    print(f"Now sleeping for {seconds:g}s.")
    sleeper(seconds)
    print("Done sleeping!")


def ticker(interval: float) -> None:
    """Another fiber that keeps working while my_app sleeps."""
    n = 0
    while True:
        unknot.sleep(interval)
        n += 1
        print(f"  tick {n}: another fiber runs while my_app sleeps")


def main(seconds: float) -> None:
    with unknot.TaskGroup() as tg:
        # 3.5 ticks per sleep: no tick coincides with the moment my_app wakes up
        tg.spawn(ticker, seconds / 3.5, name="ticker")
        my_app(seconds)
        tg.cancel()  # my_app is done: stop the ticker (the block waits for it to unwind)


if __name__ == "__main__":
    unknot.run(main, float(sys.argv[1]) if len(sys.argv) > 1 else 2.0)
