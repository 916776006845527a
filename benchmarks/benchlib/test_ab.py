"""Tests of the A/B plumbing (``benchlib/ab.py``, ``benchlib/mdsection.py``) and the echo
results' round pairing. Run: ``python -m pytest -q benchmarks/benchlib/test_ab.py``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from benchlib import ab, mdsection

REPO = Path(__file__).resolve().parents[2]


def _cell(
    head: Sequence[float | None], base: Sequence[float | None], higher: bool = True
) -> ab.Cell:
    return ab.Cell("cell", "ops/s", higher, head, base)


# ---- the verdict ------------------------------------------------------------------------------


def test_slower_in_every_round_by_more_than_the_spread_is_an_alarm() -> None:
    result = ab.compare(_cell([80, 81, 79, 80], [100, 101, 99, 100]))
    assert result.alarm
    assert result.verdict == "slower beyond spread"
    assert result.median_ratio == pytest.approx(0.8, abs=0.01)
    assert result.spread == pytest.approx(0.0125, abs=1e-3)


def test_slower_every_round_but_within_a_wide_spread_is_not_an_alarm() -> None:
    # Each round the head is 5% slower, but the machine's speed moved by half between rounds.
    base = [100.0, 150.0, 60.0, 120.0]
    result = ab.compare(_cell([b * 0.95 for b in base], base))
    assert not result.alarm
    assert result.verdict == "slower every round, within spread"


def test_ratios_on_both_sides_of_one_are_within_spread() -> None:
    result = ab.compare(_cell([100, 90, 110], [95, 100, 100]))
    assert not result.alarm
    assert result.verdict == "within spread"
    assert min(result.ratios) < 1 < max(result.ratios)


def test_faster_beyond_spread_is_reported_without_alarm() -> None:
    result = ab.compare(_cell([120, 121, 119], [100, 100, 101]))
    assert not result.alarm
    assert result.verdict == "faster beyond spread"


def test_lower_is_better_cells_flag_a_larger_head() -> None:
    memory = ab.compare(_cell([8000, 8010, 7990], [7000, 7000, 7010], higher=False))
    assert memory.alarm
    assert memory.verdict == "worse beyond spread"
    smaller = ab.compare(_cell([6000, 6010, 5990], [7000, 7000, 7010], higher=False))
    assert not smaller.alarm and smaller.verdict == "better beyond spread"


def test_rounds_pair_by_position_and_failed_rounds_drop_out() -> None:
    # Round 2 failed for the head: only rounds 1, 3 and 4 give ratios.
    result = ab.compare(_cell([50, None, 50, 50], [100, 100, 100, 100]))
    assert result.ratios == [0.5, 0.5, 0.5]
    assert result.alarm


def test_fewer_than_three_paired_rounds_give_no_verdict() -> None:
    result = ab.compare(_cell([50, 50], [100, 100]))
    assert not result.alarm
    assert result.verdict.startswith("too few rounds")
    assert ab.summary([result]).startswith("No verdict")


def test_summary_names_the_slower_cells() -> None:
    slow = ab.compare(ab.Cell("1 KiB x 100", "rps", True, [80, 80, 80], [100, 100, 100]))
    fine = ab.compare(ab.Cell("1 KiB x 10", "rps", True, [100, 99, 101], [100, 100, 100]))
    text = ab.summary([slow, fine])
    assert text.startswith("1 of 2 cells")
    assert "1 KiB x 100" in text and "1 KiB x 10;" not in text
    assert ab.summary([fine]).startswith("No cell slower")


def test_rows_show_medians_spread_range_and_bold_alarm() -> None:
    head = ab.Tree("this checkout", "abc1234", "subject", REPO)
    base = ab.Tree("HEAD~1", "def5678", "subject", REPO)
    result = ab.compare(_cell([80, 81, 79], [100, 101, 99]))
    header, row = ab.rows([result], head, base)
    assert "abc1234" in header[3] and "def5678 (HEAD~1)" in header[4]
    assert row[3] == "80 ±1%" and row[4] == "100 ±1%"
    assert row[5] == "0.800" and row[6] == "0.798-0.802"
    assert row[7] == "**slower beyond spread**"
    assert "**" not in ab.console_table(ab.rows([result], head, base))


# ---- peers --------------------------------------------------------------------------------------


FAMILY = ("unknot", "unknot-nocede")
KNOWN = ("unknot", "unknot-nocede", "gevent")


def test_expand_peers_adds_the_pair_next_to_each_other() -> None:
    assert ab.expand_peers(["gevent"], "HEAD~1", FAMILY, KNOWN) == [
        "unknot",
        "unknot@HEAD~1",
        "gevent",
    ]
    assert ab.expand_peers(["gevent", "unknot"], "v1", FAMILY, KNOWN) == [
        "gevent",
        "unknot",
        "unknot@v1",
    ]
    assert ab.expand_peers(["unknot@v1"], "v1", FAMILY, KNOWN) == ["unknot", "unknot@v1"]
    assert ab.expand_peers(["gevent"], None, FAMILY, KNOWN) == ["gevent"]


@pytest.mark.parametrize(
    ("peers", "ref"),
    [
        (["unknot@v2"], "v1"),  # not the --ab ref
        (["gevent@v1"], "v1"),  # not an unknot peer
        (["unknot@v1"], None),  # no --ab
        (["trio"], None),  # unknown
    ],
)
def test_expand_peers_rejects(peers: list[str], ref: str | None) -> None:
    with pytest.raises(ab.ABError):
        ab.expand_peers(peers, ref, FAMILY, KNOWN)


def test_pairs_and_split() -> None:
    peers = ["unknot", "unknot@v1", "unknot-nocede", "gevent"]
    assert ab.pairs(peers, "v1") == [("unknot", "unknot@v1")]
    assert ab.pairs(peers, None) == []
    assert ab.split("unknot-nocede@HEAD~3") == ("unknot-nocede", "HEAD~3")
    assert ab.split("gevent") == ("gevent", None)


# ---- trees --------------------------------------------------------------------------------------


def test_tree_env_puts_its_src_first() -> None:
    tree = ab.Tree("x", "r", "s", Path("/nowhere"))
    env = tree.env({"PYTHONPATH": "/other"})
    assert env["PYTHONPATH"].split(":") == ["/nowhere/src", "/other"]
    assert env[ab.EXPECT_ENV] == "/nowhere/src"


def test_base_checkout_is_importable_and_removed_afterwards() -> None:
    with ab.base_checkout("HEAD") as base:
        root = base.root
        assert (base.src / "unknot" / "__init__.py").is_file()
        assert (
            base.revision
            == subprocess.check_output(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], text=True
            ).strip()
        )
        where = ab.verify_import(base)
        assert Path(where).is_relative_to(base.src)
    assert not root.exists()


def test_base_checkout_is_removed_when_the_run_fails() -> None:
    with pytest.raises(KeyboardInterrupt), ab.base_checkout("HEAD") as base:
        root = base.root
        raise KeyboardInterrupt
    assert not root.exists()


def test_base_checkout_rejects_an_unknown_ref() -> None:
    with pytest.raises(ab.ABError), ab.base_checkout("no-such-ref-anywhere"):
        pass


def test_verify_import_refuses_a_tree_unknot_does_not_come_from(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()  # no unknot here: it imports from elsewhere (or not at all)
    with pytest.raises(ab.ABError):
        ab.verify_import(ab.Tree("empty", "r", "s", tmp_path))


def test_a_child_importing_the_wrong_tree_stops(tmp_path: Path) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import unknot;"
        "from benchlib import ab; ab.assert_unknot_source(unknot); print('ran')"
    )
    bench_dir = str(REPO / "benchmarks")
    env = ab.Tree("elsewhere", "r", "s", tmp_path).env()  # expects unknot under tmp_path/src
    env["PYTHONPATH"] = f"{REPO / 'src'}:{bench_dir}"
    wrong = subprocess.run(
        [sys.executable, "-c", code, bench_dir], capture_output=True, text=True, env=env
    )
    assert wrong.returncode != 0 and "expected under" in wrong.stderr
    env[ab.EXPECT_ENV] = str(REPO / "src")
    right = subprocess.run(
        [sys.executable, "-c", code, bench_dir], capture_output=True, text=True, env=env
    )
    assert right.returncode == 0 and right.stdout.strip() == "ran", right.stderr


# ---- Markdown sections -------------------------------------------------------------------------


def test_replace_section_keeps_its_neighbours(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n\n## Core\n\nold core\n\n## A/B: Core\n\nold\n\n## Echo\n\ne\n")
    mdsection.replace_section(path, "A/B: Core", "## A/B: Core\n\nnew\n### A/B: every round\n")
    text = path.read_text()
    assert "old\n" not in text.replace("old core", "")
    assert "## Core\n\nold core\n" in text
    assert "## A/B: Core\n\nnew\n### A/B: every round\n\n## Echo\n\ne\n" in text


def test_replace_section_appends_a_missing_one_and_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "new.md"
    mdsection.replace_section(path, "A/B: Echo", "## A/B: Echo\n\nx\n")
    assert path.read_text() == "# Benchmarks\n\n## A/B: Echo\n\nx\n"
    mdsection.replace_section(path, "A/B: Drivers", "## A/B: Drivers\n\ny\n")
    assert path.read_text().endswith("## A/B: Echo\n\nx\n\n## A/B: Drivers\n\ny\n")


# ---- echo results pair by round -----------------------------------------------------------------


def test_echo_results_pair_by_round_not_by_position() -> None:
    from echo_report import Cell, Results

    results = Results(["unknot", "unknot@v1"], [1024], [10])
    results.add(Cell("unknot", 1024, 10, rps=100, round_trips=1, round=0))
    results.add(Cell("unknot", 1024, 10, rps=90, round_trips=1, round=2))  # round 1 missing
    for rnd, rps in enumerate([50, 60, 45]):
        results.add(Cell("unknot@v1", 1024, 10, rps=rps, round_trips=1, round=rnd))
    assert results.per_round("unknot", 1024, 10, 3) == [100, None, 90]
    assert results.paired_ratios(1024, 10, "unknot@v1") == [2.0, 2.0]
