"""`mlrpl-bench leaderboard build`: aggregation, protocol separation, the join, the outputs."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
import textwrap

import pytest
from record_factory import make_record, sweep, write_record_file

from mlrpl_bench.cli import main
from mlrpl_bench.errors import BenchError
from mlrpl_bench.leaderboard.aggregate import build_tables
from mlrpl_bench.leaderboard.stats import estimate
from mlrpl_bench.leaderboard.build import build_leaderboard, md_escape
from mlrpl_bench.leaderboard.html import SCRIPT, _csp_hash, render_page
from mlrpl_bench.leaderboard.reference import ReferenceIndex, load_reference
from mlrpl_bench.leaderboard.submit import submit_records

PAPER_SWEEP = tuple(round(0.1 * i, 1) for i in range(1, 10))


@pytest.fixture(scope="module")
def reference():
    return ReferenceIndex(load_reference())


def test_stat_is_mean_sample_std_and_t_interval():
    s = estimate([80.0, 82.0])
    assert s.mean == 81.0 and s.std == pytest.approx(math.sqrt(2)) and s.n == 2
    # t(0.975, 1) = 12.7062: half-width 12.7062 * sqrt(2) / sqrt(2)
    assert (s.lo, s.hi) == (pytest.approx(81.0 - 12.7062, abs=1e-4), pytest.approx(81.0 + 12.7062, abs=1e-4))
    assert s.text() == "81.0 ± 12.7" and s.method == "t"
    assert estimate([70.0]).text() == "70.0" and estimate([None]).text() == "–"
    top = estimate([99.0, 100.0])  # a percentage's interval stops at 100; the text keeps the half-width
    assert top.hi == 100.0 and top.text() == "99.5 ± 6.4"


def test_cells_average_over_seeds_and_ave_is_per_seed_then_over_seeds():
    recs = [make_record("m", known=0.1, seed=0, mAP=60.0), make_record("m", known=0.5, seed=0, mAP=80.0),
            make_record("m", known=0.1, seed=1, mAP=64.0), make_record("m", known=0.5, seed=1, mAP=90.0)]
    (table,) = build_tables(recs)
    (row,) = table.rows
    assert table.knowns == [0.1, 0.5]
    assert row.cells[0.1]["mAP"].mean == 62.0 and row.cells[0.1]["mAP"].std == pytest.approx(math.sqrt(8))
    assert row.cells[0.5]["mAP"].mean == 85.0
    # per seed: (60+80)/2 = 70, (64+90)/2 = 77 -> 73.5 ± std(70, 77)
    assert row.average["mAP"].mean == 73.5 and row.average["mAP"].std == pytest.approx(math.sqrt(24.5))
    assert row.average["mAP"].n == 2 and row.seeds == [0, 1]


def test_ave_counts_only_the_seeds_that_ran_every_proportion():
    recs = [make_record("m", known=0.1, seed=0, mAP=60.0), make_record("m", known=0.5, seed=0, mAP=80.0),
            make_record("m", known=0.1, seed=1, mAP=10.0)]
    (table,) = build_tables(recs)
    (row,) = table.rows
    assert row.cells[0.1]["mAP"].mean == 35.0  # the cell has both seeds
    assert row.average["mAP"].mean == 70.0 and row.average["mAP"].n == 1  # seed 1 misses 0.5
    assert any("Ave. over the 1 of 2 seeds" in n for n in table.notes)
    # no seed ran both proportions: no Ave. at all (not a mean of cell means)
    (row,) = build_tables([make_record("m", known=0.1, seed=0, mAP=60.0), make_record("m", known=0.5, seed=1, mAP=80.0)])[0].rows
    assert row.average["mAP"].mean is None and row.average["mAP"].text() == "–"


def test_different_protocols_are_never_mixed():
    base = sweep("hst", 70, knowns=(0.1, 0.5), seeds=(0,))
    other_scheme = sweep("hst", 10, knowns=(0.1, 0.5), seeds=(0,), scheme="hcp")
    other_dataset = sweep("hst", 20, knowns=(0.1, 0.5), seeds=(0,), dataset_version="v2")
    (table,) = build_tables(base + other_scheme + other_dataset)
    assert len(table.rows) == 3
    assert len({r.protocol_id for r in table.rows}) == 3
    for row in table.rows:  # each row holds one protocol's values only
        assert len(row.runs[["dataset_fp_train", "dataset_fp_test", "scheme"]].drop_duplicates()) == 1
    assert sorted(r.cells[0.1]["mAP"].mean for r in table.rows) == [11.0, 21.0, 71.0]


def test_a_run_with_another_mask_gets_its_own_row():
    same = [make_record("a", known=0.3, seed=0, mAP=50.0), make_record("b", known=0.3, seed=0, mAP=55.0),
            make_record("c", known=0.3, seed=0, mAP=60.0)]
    odd = make_record("c", known=0.3, seed=1, mAP=10.0)
    odd_mask = make_record("c", known=0.3, seed=0, mAP=99.0)
    odd_mask["protocol"]["mask_fingerprint"] = "f" * 64
    (table,) = build_tables(same + [odd, odd_mask])
    rows = {(r.method, r.deviant_mask): r for r in table.rows}
    assert rows[("c", False)].cells[0.3]["mAP"].mean == 35.0  # seeds 0 and 1 of the common protocol
    deviant = rows[("c", True)]
    assert deviant.cells[0.3]["mAP"].mean == 99.0 and "mask ffffffff" in deviant.protocol_id


def test_method_versions_profiles_and_options_are_separate_rows():
    recs = [make_record("m", mAP=50.0), make_record("m", mAP=60.0, method_version="2.0"),
            make_record("m", mAP=70.0, profile="paper"), make_record("m", mAP=80.0, options={"k": 3})]
    (table,) = build_tables(recs)
    assert sorted(r.cells[0.5]["mAP"].mean for r in table.rows) == [50.0, 60.0, 70.0, 80.0]
    assert len({r.detail for r in table.rows}) == 4


def test_tables_per_dataset_and_setting():
    recs = [make_record(dataset="voc2007"), make_record(dataset="coco2014"), make_record(dataset="voc2007", setting="ppl")]
    assert [(t.dataset, t.setting) for t in build_tables(recs)] == [("coco2014", "pal"), ("voc2007", "pal"), ("voc2007", "ppl")]


def test_published_numbers_are_joined_with_the_gap(reference):
    recs = sweep("hst", 80, knowns=PAPER_SWEEP, seeds=(0,), slope=0) + sweep("partial-bce", 70, knowns=(0.1,), seeds=(0,))
    (table,) = build_tables(recs, reference)
    hst = next(r for r in table.rows if r.method == "hst")
    ref = hst.published(0.1)
    assert (ref.source, ref.mAP) == ("HST Table 1", 84.3)  # HST on VOC 2007 at 10%
    assert hst.gap(0.1) == pytest.approx(80.0 - 84.3)
    assert hst.published("ave").mAP == 90.9 and hst.gap("ave") == pytest.approx(80.0 - 90.9)
    assert hst.published("ave", "CF1").CF1 == 86.1  # HST Table 2
    pbce = next(r for r in table.rows if r.method == "partial-bce")
    assert pbce.published(0.1).mAP == 80.7
    assert pbce.published("ave") is None  # one proportion is not the papers' nine-proportion Ave.


def test_spl_and_full_label_runs_join_their_tables(reference):
    # SPL has no known proportion in the papers (IPL TABLE VI); FAL is the full-label TABLE III.
    spl = make_record("ipl", dataset="coco2014", setting="spl", known=1.0, mAP=70.0)
    full = make_record("bce", dataset="cub200", setting="full", known=1.0, mAP=30.0)
    tables = {t.setting: t for t in build_tables([spl, full], reference)}
    assert tables["spl"].rows[0].published(1.0).mAP == 72.0
    assert tables["spl"].rows[0].gap(1.0) == pytest.approx(-2.0)
    assert tables["full"].rows[0].published(1.0).source == "IPL TABLE III"
    assert tables["full"].rows[0].published(1.0).mAP == 32.1


def test_ablation_runs_are_compared_with_the_published_ablation(reference):
    full = sweep("dsrb", 80, knowns=PAPER_SWEEP, seeds=(0,), slope=0, options={"modules": "both", "fixed_alpha": False})
    iprb = sweep("dsrb", 80, knowns=PAPER_SWEEP, seeds=(0,), slope=0, options={"modules": "iprb", "fixed_alpha": False})
    both = make_record("hst", options={"modules": "ist", "sarl": "sa"})
    tables = {t.dataset: t for t in build_tables(full + iprb + [both], reference)}
    rows = {r.options["modules"]: r for r in tables["voc2007"].rows if r.method == "dsrb"}
    assert rows["both"].published(0.1).mAP == 85.7 and rows["both"].published(0.1).method == "DSRB"
    assert rows["iprb"].published(0.1).mAP == 84.1 and rows["iprb"].published(0.1).method == "Ours IPRB"
    assert rows["iprb"].variant == "modules=iprb"
    hst = next(r for r in tables["voc2007"].rows if r.method == "hst")
    assert hst.reference == {} and any("no published counterpart" in n for n in tables["voc2007"].notes)


def test_unknown_methods_have_no_published_numbers(reference):
    (table,) = build_tables([make_record("my-new-method")], reference)
    assert table.rows[0].reference == {} and table.rows[0].gap(0.5) is None


def _build(tmp_path, records, **kwargs):
    results = tmp_path / "results"
    paths = [write_record_file(tmp_path / "in", r, f"{i}.json") for i, r in enumerate(records)]
    submit_records(paths, results)
    return build_leaderboard(results, tmp_path / "site", **kwargs)


def test_build_writes_markdown_csv_and_html(tmp_path):
    recs = sweep("hst", 80, knowns=PAPER_SWEEP) + sweep("partial-bce", 70, knowns=PAPER_SWEEP) + \
        sweep("ipl", 40, knowns=(0.3, 0.6, 0.9), dataset="coco2014", setting="ppl", seeds=(0,))
    result = _build(tmp_path, recs)
    site = tmp_path / "site"
    names = sorted(p.relative_to(site).as_posix() for p in result.files)
    assert names == ["index.html", "leaderboard.csv", "leaderboard.md", "tables/coco2014__ppl.csv",
                     "tables/coco2014__ppl.md", "tables/voc2007__pal.csv", "tables/voc2007__pal.md"]
    md = (site / "tables" / "voc2007__pal.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Method"))
    assert header.split(" | ")[2:13] == ["Budget", "10%", "20%", "30%", "40%", "50%", "60%", "70%", "80%", "90%", "Ave. mAP"]
    hst_line = next(line for line in md.splitlines() if line.startswith("| hst |"))
    # 80 + 10*0.1 (+0.5 for seed 1): mean 81.25 -> "81.2", std 0.354, t(0.975, 1) * 0.354 / sqrt(2) = 3.18
    assert "| 81.2 ± 3.2 ▲ |" in hst_line  # hst is 10 points above partial-bce at every seed
    assert "| hst | " in md and "HST Table 1" in md and "| 10% | mAP | 81.2 ± 3.2 | 84.3 | -3.0 |" in md
    assert "Paired differences against partial-bce" in md and "mAP by class frequency" not in md  # no counts
    with (site / "leaderboard.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    ipl = [r for r in rows if r["method"] == "ipl" and r["known"] == "0.3"]
    assert ipl[0]["published_mAP"] == "73.1000" and ipl[0]["published_source"] == "IPL TABLE V"
    assert float(ipl[0]["gap_mAP"]) == pytest.approx(43.0 - 73.1)
    hst_ave = next(r for r in rows if r["method"] == "hst" and r["known"] == "ave")
    assert float(hst_ave["mAP_mean"]) == pytest.approx(85.25) and hst_ave["published_mAP"] == "90.9000"
    assert float(hst_ave["diff_mAP"]) == pytest.approx(10.0) and hst_ave["mark"] == "better" and hst_ave["interval"] == "t"
    assert float(hst_ave["mAP_lo"]) < 85.25 < float(hst_ave["mAP_hi"])
    assert len([r for r in rows if r["method"] == "hst"]) == 10  # nine proportions + ave
    page = (site / "index.html").read_text()
    assert page.count('class="gap-plot"') == 2  # both tables have published numbers to compare with
    assert "Every method the papers report on voc2007 · pal (10)" in page


def test_strings_from_records_are_escaped_everywhere(tmp_path):
    evil = "<script>alert(1)</script>|=cmd()"
    result = _build(tmp_path, [make_record(evil, known=0.1), make_record(evil, known=0.5, mAP=90.0)])
    page = (tmp_path / "site" / "index.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<script>") == 1  # the page's own script only
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;\\|=cmd()" in md
    with (tmp_path / "site" / "leaderboard.csv").open() as fh:
        methods = {r["method"] for r in csv.DictReader(fh)}
    assert methods == {evil}  # a leading '=' would be prefixed; this one starts with '<'
    assert result.tables[0].rows[0].method == evil
    assert md_escape("=a|b") == "=a\\|b"


def test_csv_cells_that_look_like_formulas_are_defused(tmp_path):
    _build(tmp_path, [make_record("=HYPERLINK(\"x\")")])
    with (tmp_path / "site" / "leaderboard.csv").open() as fh:
        (row, _) = list(csv.DictReader(fh))
    assert row["method"] == "'=HYPERLINK(\"x\")"


def test_page_allows_only_its_own_script_and_style():
    page = render_page([], n_records=0)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert f"script-src '{_csp_hash(SCRIPT)}'" in csp and "default-src 'none'" in csp
    assert "No result records yet" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing loaded from anywhere


def test_duplicate_runs_keep_the_later_one(tmp_path):
    a = make_record(mAP=10.0)
    b = make_record(mAP=20.0, runtime={"finished": "2027-01-01T00:00:00+00:00"})
    for name, rec in (("a", a), ("b", b)):
        write_record_file(tmp_path / "results" / name, rec)
    result = build_leaderboard(tmp_path / "results", tmp_path / "site")
    (row,) = result.tables[0].rows
    assert row.cells[0.5]["mAP"].mean == 20.0 and "duplicate" in result.tables[0].notes[0]


def test_build_refuses_a_bad_record_file(tmp_path):
    results = tmp_path / "results"
    write_record_file(results, make_record())
    bad = results / "bad.json"
    bad.write_text('{"schema_version": 1}')
    with pytest.raises(BenchError, match=r"bad.json: field 'run_id' is missing"):
        build_leaderboard(results, tmp_path / "site")
    with pytest.raises(BenchError, match="results directory not found"):
        build_leaderboard(tmp_path / "nowhere", tmp_path / "site")


def test_cli_build(tmp_path, capsys):
    results = tmp_path / "results"
    paths = [write_record_file(tmp_path / "in", r, f"{i}.json") for i, r in enumerate(sweep("hst", 80, knowns=(0.1, 0.2)))]
    main(["leaderboard", "submit", *map(str, paths), "--results", str(results)])
    main(["leaderboard", "build", "--results", str(results), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "built 1 table(s), 1 row(s) from 4 record(s)" in out
    assert (tmp_path / "out" / "index.html").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    main(["leaderboard", "build", "--results", str(empty), "--out", str(tmp_path / "out2")])
    assert "No result records yet" in (tmp_path / "out2" / "leaderboard.md").read_text()


def test_leaderboard_never_imports_torch_plugins_or_the_engine(tmp_path):
    results = tmp_path / "results"
    write_record_file(results, make_record("hst"))
    code = textwrap.dedent(f"""
        import sys
        from mlrpl_bench.cli import main
        main(["leaderboard", "build", "--results", {str(results)!r}, "--out", {str(tmp_path / 'site')!r}])
        bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")
               or m.startswith(("mlrpl_bench.plugins", "mlrpl_bench.engine", "mlrpl_bench.runner", "mlrpl_bench.plugin_manager"))]
        assert not bad, bad
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_rows_missing_proportions_get_no_ave_and_rank_last():
    finished = sweep("finished", 40.0, knowns=(0.1, 0.5, 0.9), seeds=(0,))
    unfinished = sweep("unfinished", 90.0, knowns=(0.1,), seeds=(0,))  # a high mean over one proportion only
    (table,) = build_tables(finished + unfinished)
    assert table.knowns == [0.1, 0.5, 0.9]
    by_name = {r.method: r for r in table.rows}
    assert by_name["finished"].average["mAP"].mean == pytest.approx(45.0)
    assert all(by_name["unfinished"].average[m].mean is None for m in ("mAP", "OF1", "CF1"))
    assert [r.method for r in table.rows] == ["finished", "unfinished"]
    assert any("unfinished" in n and "1 of the table's 3 proportions" in n for n in table.notes)


# --------------------------------------------------------------------------- budgets (issue 16.4)

def test_records_that_differ_only_in_budget_are_separate_rows_with_their_budget_shown(tmp_path):
    short = sweep("m", 40, knowns=(0.1, 0.5), train={"epochs": 2})
    long = sweep("m", 60, knowns=(0.1, 0.5), train={"epochs": 8})
    for i, rec in enumerate(short + long):  # (filing both budgets side by side is submit's business)
        write_record_file(tmp_path / "results", rec, f"{i}.json")
    result = build_leaderboard(tmp_path / "results", tmp_path / "site")
    (table,) = result.tables
    rows = sorted(table.rows, key=lambda r: r.budget["epochs"])
    assert [r.budget["epochs"] for r in rows] == [2, 8] and rows[0].budget_id != rows[1].budget_id
    assert rows[0].cells[0.1]["mAP"].mean == pytest.approx(41.25) and rows[1].cells[0.1]["mAP"].mean == pytest.approx(61.25)
    assert rows[0].budget_label.startswith("2 ep") and "epochs: 2" in rows[0].budget_text
    md = (tmp_path / "site" / "tables" / "voc2007__pal.md").read_text()
    assert md.count("| m |") == 2 and "2 ep" in md and "8 ep" in md and "epochs: 2;" in md and "epochs: 8;" in md
    page = (tmp_path / "site" / "index.html").read_text()
    # The main table has no budget column: the budget most rows share (a tie: the smaller id) is the
    # caption's line, and only the other row shows its own badge, under its name.
    main = page.split('<table class="sortable main"', 1)[1].split("</table>", 1)[0]
    caption = page.split('class="note budget-caption"', 1)[1].split("</p>", 1)[0]
    common = min(r.budget_id for r in rows)
    for row in rows:
        epochs = f"epochs: {row.budget['epochs']}; image size"
        assert (epochs in caption) == (row.budget_id == common)
        assert (f'title="{epochs}' in main) == (row.budget_id != common)
    assert "<th" not in main or "Budget" not in main.split("</thead>")[0]


@pytest.mark.parametrize("change", [
    {"train": {"image_size": 64}}, {"train": {"batch_size": 16}}, {"train": {"lr": 1e-4}},
    {"train": {"backbone": "resnet101"}}, {"train": {"track": "frozen"}}, {"train": {"freeze_backbone": "official"}},
    {"train": {"backbone_weights": "imagenet", "backbone_weights_sha256": "a" * 64}}, {"tuning": {"grid": {"lr": [1e-3, 1e-4]}}},
])
def test_every_budget_field_separates_rows(change):
    base = make_record("m", train={"backbone": "small-cnn", "image_size": 32, "backbone_weights": "none"})
    other = make_record("m", mAP=50.0, **{k: {**base.get(k, {}), **v} for k, v in change.items()})
    (table,) = build_tables([base, other])
    assert len(table.rows) == 2


def test_weights_without_a_hash_merge_only_with_the_same_weights_name():
    def rec(seed, **train):
        return make_record("m", seed=seed, train={"backbone": "resnet101", **train})
    same = [rec(0, backbone_weights="imagenet"), rec(1, backbone_weights="imagenet")]
    hashed = [rec(2, backbone_weights="/data/w.pt", backbone_weights_sha256="b" * 64),
              rec(3, backbone_weights="/other/path/w.pt", backbone_weights_sha256="b" * 64)]  # one file, two paths
    (table,) = build_tables(same + hashed)
    assert sorted(len(r.seeds) for r in table.rows) == [2, 2]
    unknown = next(r for r in table.rows if r.budget["weights"] == "unknown:imagenet")
    assert "imagenet (sha256 unknown)" in unknown.budget_text


def test_a_row_is_never_compared_with_a_baseline_of_another_budget():
    pbce = sweep("partial-bce", 40, knowns=(0.1, 0.5), seeds=(0, 1, 2), train={"epochs": 8})
    short = sweep("m", 60, knowns=(0.1, 0.5), seeds=(0, 1, 2), train={"epochs": 2})
    same = sweep("m", 60, knowns=(0.1, 0.5), seeds=(0, 1, 2), train={"epochs": 8})
    (table,) = build_tables(pbce + short + same)
    by_epochs = {r.budget["epochs"]: r for r in table.rows if r.method == "m"}
    assert by_epochs[2].versus == {} and by_epochs[8].versus[0.1].mark == "better"
    assert any("no partial-bce row with the same protocol and budget" in n for n in table.notes)


# --------------------------------------------------------------------------- finding records

def test_build_reads_several_folders_and_a_runs_tree_skipping_what_is_not_a_record(tmp_path, capsys):
    filed = tmp_path / "filed"
    submit_records([write_record_file(tmp_path / "in", r, f"{i}.json") for i, r in
                    enumerate(sweep("partial-bce", 40, knowns=(0.1, 0.5), seeds=(0,)))], filed)
    runs = tmp_path / "runs"
    for rec in sweep("hst", 60, knowns=(0.1, 0.5), seeds=(0,)):
        write_record_file(runs / rec["run_id"], rec, "record.json")
        (runs / rec["run_id"] / "epochs.jsonl").write_text('{"epoch": 0}\n')
    (runs / "_protocol").mkdir()
    for i in range(2):
        (runs / "_protocol" / f"cell{i}.json").write_text(json.dumps(
            {"format": 1, "mask_fingerprint": f"{i}" * 64, "labels_fingerprint": "c" * 64}))
    (runs / "notes.json").write_text('["not a record"]')
    main(["leaderboard", "build", "--results", str(filed), "--results", str(runs), "--out", str(tmp_path / "site")])
    out = capsys.readouterr().out
    assert "built 1 table(s), 2 row(s) from 4 record(s)" in out
    assert "skipped 3 JSON file(s) that are not records: 1 other JSON (not a results record), 2 protocol-cache metadata" in out
    assert "skipped 3 JSON file(s)" in (tmp_path / "site" / "leaderboard.md").read_text()
    (runs / "broken.json").write_text("{not json")
    with pytest.raises(BenchError, match=r"broken.json: not valid JSON"):
        build_leaderboard([filed, runs], tmp_path / "site2")


def test_an_unknown_baseline_is_refused_with_the_choices(tmp_path, cli):
    results = tmp_path / "results"
    write_record_file(results, make_record("hst"))
    res = cli("leaderboard", "build", "--results", results, "--out", tmp_path / "site", "--baseline", "partial-bse")
    assert res.exit_code == 2 and "--baseline 'partial-bse' is not a method of these records; choose one of hst" in res.stderr


# --------------------------------------------------------------------------- one Ave. rule

def test_the_run_summary_is_derived_from_the_same_rule():
    from mlrpl_bench.summary import sweep_rows, sweep_table

    recs = [make_record("m", known=0.1, seed=0, mAP=60.0), make_record("m", known=0.5, seed=0, mAP=80.0),
            make_record("m", known=0.1, seed=1, mAP=10.0), make_record("m", known=0.1, seed=2, mAP=20.0),
            make_record("m", known=0.5, seed=2, mAP=40.0)]
    rows = {r[1]: r for r in sweep_rows(recs)}
    (row,) = build_tables(recs)[0].rows
    assert rows["0.1"][2] == row.cells[0.1]["mAP"].text(2) == "30.00 ± 65.72" and rows["0.1"][-1] == "3"
    # Ave.: seeds 0 and 2 ran both proportions: (70 + 30) / 2 = 50 (not the mean of the cell means)
    assert rows["Ave."][2] == row.average["mAP"].text(2) and row.average["mAP"].mean == 50.0 and rows["Ave."][-1] == "2"
    assert "half-width of the 95 % t-interval" in sweep_table(recs)
