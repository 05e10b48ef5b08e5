"""Resolution as a first-class number (issue 19.2): the minimum detectable effect of every paired
comparison and the seeds a 1-point MDE needs, pinned on hand-checkable numbers and followed into
the CSV and the Markdown; the tuning checks (grid edge, first epoch) and the leaderboard's flag."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
from record_factory import make_record, write_record_file
from scipy import stats as sp

from mlrpl_bench import tuning_checks
from mlrpl_bench.leaderboard import stats
from mlrpl_bench.leaderboard.aggregate import TUNING_FLAG, aggregated_frame, build_tables
from mlrpl_bench.leaderboard.build import build_leaderboard
from mlrpl_bench.leaderboard.html import render_page

KNOWNS = tuple(round(0.1 * i, 1) for i in range(1, 10))


# --------------------------------------------------------------------------- the formula

def test_mde_is_the_paired_t_formula_on_hand_checkable_numbers():
    # differences [1, 2, 3]: s_d = 1, n = 3: (t(.975, 2) + t(.80, 2)) / sqrt(3) = (4.3027 + 1.0607) / 1.7321
    assert stats.mde(1.0, 3) == pytest.approx((4.302653 + 1.060660) / math.sqrt(3), abs=1e-5)
    assert stats.mde(1.0, 3) == pytest.approx(3.096510, abs=1e-5)
    result = stats.paired([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert result.mde == pytest.approx(3.096510, abs=1e-5) and result.n == 3
    # two seeds, differences [0, 2]: s_d = sqrt(2): (12.7062 + 1.3764) * sqrt(2) / sqrt(2)
    assert stats.paired([0.0, 2.0], [0.0, 0.0]).mde == pytest.approx(12.706205 + 1.376382, abs=1e-5)
    # equal differences: SE = 0, so MDE 0 and the fewest seeds there are
    same = stats.paired([4.0, 5.0, 6.0], [3.0, 4.0, 5.0])
    assert same.mde == 0.0 and same.seeds_needed == 2
    # below 2 paired seeds there is no comparison and no MDE
    assert stats.paired([1.0], [0.0]) is None and stats.mde(1.0, 1) is None


def test_mde_with_test_image_variance_uses_the_intervals_se_and_degrees_of_freedom():
    # s = 1.290994 (values 1..4), n = 4, v = 0.25: SE^2 = 0.41667 + 0.25, df 7.68 (as the interval's)
    # t(.975, 7.68) = 2.322836, t(.80, 7.68) = 0.890962: (2.322836 + 0.890962) * sqrt(2/3) = 2.624055
    s = float(pd.Series([1.0, 2.0, 3.0, 4.0]).std())
    assert stats.mde(s, 4, 0.25) == pytest.approx(2.624055, abs=1e-5)
    assert stats.mde(s, 4, 0.0) == pytest.approx(stats.mde(s, 4))  # no image variance: the seeds' formula
    a, b = [52.0, 49.0, 55.0], [50.0, 48.5, 51.0]
    d = pd.Series(a) - pd.Series(b)
    with_images = stats.paired(a, b, image_var=1.0)
    se = math.sqrt(d.var() / 3 + 1.0)
    df = stats.welch_df(d.var() / 3, 1.0, 3)
    assert with_images.mde == pytest.approx((sp.t.ppf(0.975, df) + sp.t.ppf(0.8, df)) * se)
    assert (with_images.hi - with_images.diff) == pytest.approx(sp.t.ppf(0.975, df) * se)  # the same SE and df


def _mde_at(std: float, count: int, shared: float = 0.0, single: float = 0.0, images: bool = False) -> float:
    """The MDE written out for a brute-force search (module docstring of leaderboard.stats)."""
    seed_var, image = std ** 2 / count, shared + (single - shared) / count
    df = (seed_var + image) ** 2 / (seed_var ** 2 / (count - 1)) if images else count - 1
    return (sp.t.ppf(0.975, df) + sp.t.ppf(0.8, df)) * math.sqrt(seed_var + image)


@pytest.mark.parametrize("std, expected", [(1.0, 10), (0.5, 5), (3.0, 73), (0.0, 2)])
def test_seeds_for_a_one_point_mde(std, expected):
    # s_d = 1: 9 seeds give (2.3060 + 0.8889) / 3 = 1.065, 10 give (2.2622 + 0.8834) / 3.1623 = 0.9946
    assert stats.seeds_needed(std, 3) == expected
    assert _mde_at(std, expected) <= 1.0 and (expected == 2 or _mde_at(std, expected - 1) > 1.0)
    assert stats.paired([10 + std * x for x in (-1, 0, 1)], [10.0] * 3).seeds_needed == expected  # s_d = std


def test_seeds_needed_with_test_image_variance_splits_shared_from_averaging_noise():
    # v = 0.1 measured at n = 3 with each seed's own v1 = 0.25: shared c = (3 * 0.1 - 0.25) / 2 = 0.025
    n = stats.seeds_needed(1.0, 3, image_var=0.1, image_var_single=0.25)
    assert _mde_at(1.0, n, 0.025, 0.25, images=True) <= 1.0 < _mde_at(1.0, n - 1, 0.025, 0.25, images=True)
    assert stats.mde_floor(3, 0.1, 0.25) == pytest.approx((1.959964 + 0.841621) * math.sqrt(0.025), abs=1e-5)
    # without v1 all of v counts as shared (the conservative reading): more seeds
    assert stats.seeds_needed(1.0, 3, image_var=0.1) > n
    # a shared variance whose floor (z.975 + z.80) * sqrt(0.2) = 1.2529 exceeds 1: no number of seeds
    assert stats.mde_floor(3, 0.2) == pytest.approx(1.252907, abs=1e-5)
    assert stats.seeds_needed(0.1, 3, image_var=0.2) is None
    unreachable = stats.paired([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], image_var=0.2)
    assert unreachable.seeds_needed is None and unreachable.seeds_text() == "∞ (floor 1.3)"
    assert stats.seeds_needed(1.0, 1) is None


# --------------------------------------------------------------------------- CSV, Markdown, page

def _records() -> list[dict]:
    """partial-bce; ``m`` better by [1, 2, 3] on seeds 0-2 at every proportion but 90 % (2.8 on
    each seed): the Ave. differences are (8 [1, 2, 3] + 2.8) / 9, s_d = 8/9; ``lonely`` on seed 0 only."""
    records = []
    for seed in (0, 1, 2):
        for known in KNOWNS:
            base = 50 + 10 * known + seed
            records.append(make_record("partial-bce", known=known, seed=seed, mAP=base))
            records.append(make_record("m", known=known, seed=seed, mAP=base + (2.8 if known == 0.9 else 1 + seed)))
    records += [make_record("lonely", known=known, seed=0, mAP=70.0) for known in KNOWNS]
    return records


def test_csv_and_markdown_state_the_mde_and_the_seeds_it_needs(tmp_path):
    for i, rec in enumerate(_records()):
        write_record_file(tmp_path / "results", rec, f"{i}.json")
    build_leaderboard(tmp_path / "results", tmp_path / "site")
    csv = pd.read_csv(tmp_path / "site" / "leaderboard.csv", keep_default_na=False)
    assert {"mde", "seeds_for_mde_1", "mde_floor", "mde_note", "tuning_warnings"} <= set(csv.columns)
    m = csv[csv["method"] == "m"].set_index("known")
    assert float(m.loc["0.1", "mde"]) == pytest.approx(3.0965, abs=1e-4) and m.loc["0.1", "seeds_for_mde_1"] == "10"
    assert float(m.loc["0.9", "mde"]) == 0.0 and m.loc["0.9", "seeds_for_mde_1"] == "2"
    # Ave.: s_d = 8/9: MDE 3.0965 * 8/9 = 2.7525; 9 seeds: (2.3060 + 0.8889) * (8/9) / 3 = 0.947 <= 1 < 8 seeds' 1.03
    assert float(m.loc["ave", "mde"]) == pytest.approx(3.096510 * 8 / 9, abs=1e-4) and m.loc["ave", "seeds_for_mde_1"] == "9"
    assert m.loc["0.1", "mde_note"] == ""
    lonely = csv[csv["method"] == "lonely"]
    assert (lonely["mde"] == "").all() and (lonely["seeds_for_mde_1"] == "").all()
    assert set(lonely["mde_note"]) == {"fewer than 2 paired seeds with the baseline: no MDE"}
    base = csv[csv["method"] == "partial-bce"]
    assert (base["mde"] == "").all() and set(base["mde_note"]) == {""}
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    section = md.split("Resolution against partial-bce", 1)[1].split("\n\n", 2)[1]
    lines = {line.split(" | ")[0].strip("| "): line for line in section.splitlines()}
    assert lines["m"].endswith("| 3 | " + " | ".join(["3.1 (10)"] * 8) + " | 0.0 (2) | 2.8 (9) |")
    assert lines["lonely"].endswith("| 1 | " + " | ".join(["–"] * 10) + " |")
    assert "partial-bce" not in lines


def test_the_page_puts_the_difference_and_mde_under_each_compared_cell():
    (table,) = build_tables(_records())
    page = render_page([table], n_records=1)
    main = page.split('<table class="sortable main"', 1)[1].split("</table>", 1)[0]
    row = main.split('data-method="m"', 1)[1].split("</tr>", 1)[0]
    assert row.count('class="mde"') == 10 and "Δ\u00a0+2.0 · MDE\u00a03.1" in row and "Δ\u00a0+2.1 · MDE\u00a02.8" in row
    lonely = main.split('data-method="lonely"', 1)[1].split("</tr>", 1)[0]
    assert lonely.count(">MDE n/a</small>") == 10
    assert 'class="mde"' not in main.split('data-method="partial-bce"', 1)[1].split("</tr>", 1)[0]
    versus = page.split('<table class="sortable versus"', 1)[1].split("</table>", 1)[0]
    assert "MDE\u00a03.1 · 10\u00a0seeds" in versus and "MDE\u00a02.8 · 9\u00a0seeds" in versus
    assert "Budget" not in versus.split("</thead>", 1)[0]


# --------------------------------------------------------------------------- tuning checks

def test_grid_edge_and_first_epoch_checks():
    grid = {"lr": [1e-3, 3e-3, 1e-2], "normalization": ["known", "durand"], "flag": [True, False], "wd": [0.0]}
    assert tuning_checks.tuning_warnings(grid, {"lr": 3e-3, "normalization": "known", "flag": True, "wd": 0.0}, 4) == []
    low = tuning_checks.tuning_warnings(grid, {"lr": 1e-3}, 4)
    assert low == ["grid-edge: lr=0.001 is the smallest value of the grid [0.001, 0.003, 0.01]: the optimum may lie "
                   "beyond it (widen the grid)"]
    (high,) = tuning_checks.tuning_warnings(grid, {"lr": 1e-2}, 4)
    assert high.startswith("grid-edge: lr=0.01 is the largest value")
    # the engine numbers epochs from 0: best_epoch 0 is the first epoch, 1 the second
    (first,) = tuning_checks.tuning_warnings(grid, {"lr": 3e-3}, 0)
    assert first.startswith("first-epoch: the selected best epoch is the first (index 0)")
    assert tuning_checks.tuning_warnings(grid, {"lr": 3e-3}, 1) == []
    assert len(tuning_checks.tuning_warnings(grid, {"lr": 1e-2}, 0)) == 2
    # non-numeric, boolean and one-value axes have no edge; a record without tuning has no warning
    assert tuning_checks.grid_edge_warnings(grid, {"normalization": "durand", "flag": False, "wd": 0.0}) == []
    record = make_record("m")
    assert tuning_checks.record_warnings(record) == []
    record["selection"]["best_epoch"] = 0
    assert tuning_checks.record_warnings(record) == []  # untuned: not a tuning warning


def _tuned(method: str, known: float, seed: int, lr: float, best_epoch: int) -> dict:
    return make_record(method, known=known, seed=seed, mAP=60.0 + seed, train={"lr": lr},
                       selection={"best_epoch": best_epoch},
                       tuning={"grid": {"lr": [1e-3, 1e-2, 3e-2]}, "metric": "mAP", "split": "validation",
                               "chosen_on_seed": 0, "candidates": [], "chosen": {"lr": lr}})


def test_the_leaderboard_flags_tuning_warnings_per_cell_with_their_seeds(tmp_path):
    records = [_tuned("edge", k, s, 3e-2, 5) for k in (0.1, 0.5) for s in (0, 1)]
    records += [_tuned("fine", k, s, 1e-2, 0 if (k, s) == (0.5, 1) else 5) for k in (0.1, 0.5) for s in (0, 1)]
    for i, rec in enumerate(records):
        write_record_file(tmp_path / "results", rec, f"{i}.json")
    result = build_leaderboard(tmp_path / "results", tmp_path / "site")
    rows = {r.method: r for r in result.tables[0].rows}
    edge = "grid-edge: lr=0.03 is the largest value of the grid [0.001, 0.01, 0.03]: the optimum may lie beyond it " \
           "(widen the grid)"
    assert rows["edge"].tuning_warnings == {0.1: [edge + " (seeds 0, 1)"], 0.5: [edge + " (seeds 0, 1)"]}
    (fine,) = rows["fine"].tuning_warnings[0.5]
    assert list(rows["fine"].tuning_warnings) == [0.5] and fine.startswith("first-epoch") and fine.endswith("(seed 1)")
    csv = pd.read_csv(io.StringIO((tmp_path / "site" / "leaderboard.csv").read_text()), keep_default_na=False)
    flagged = csv[csv["tuning_warnings"] != ""]
    assert sorted(zip(flagged["method"], flagged["known"])) == [("edge", "0.1"), ("edge", "0.5"), ("fine", "0.5")]
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert md.count(f"({TUNING_FLAG})") == 2 and "- fine (" in md and "at 50%: first-epoch" in md
    page = (tmp_path / "site" / "index.html").read_text()
    assert page.count('class="badge tuning-warning"') == 2 and 'class="tuning-warnings"' in page
    frame = aggregated_frame(result.tables)
    assert frame.loc[(frame["method"] == "edge") & (frame["known"] == "ave"), "tuning_warnings"].item() == ""


def test_the_readme_table_carries_the_ave_mde():
    from mlrpl_bench.leaderboard.build import readme_table

    (table,) = build_tables(_records())
    lines = {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in readme_table(table).splitlines()
             if line.startswith("| ")}
    column = lines["method"].index("Ave. MDE (seeds for 1)")
    assert lines["m"][column] == "2.8 (9)" and lines["partial-bce"][column] == "–" and lines["lonely"][column] == "–"
