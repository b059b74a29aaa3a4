"""Reader-study statistics against values known from the literature or worked by hand."""

import csv
import math

import pytest

from polyp_core.review import stats


def rec(reviewer, image, truth, verdict, quality="good", source=None, label="AD", histology=None):
    return {"reviewer": reviewer, "image": image, "truth": truth, "verdict": verdict,
            "quality": quality, "source": source or ("real" if truth == "real" else "gen"),
            "label": label, "histology": histology}


def test_wilson_interval_known_values():
    low, high = stats.wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert stats.wilson(0, 10)[0] == 0.0
    assert all(math.isnan(x) for x in stats.wilson(0, 0))


def test_verdict_metrics_both_conventions():
    records = ([rec("a", f"r{i}", "real", "real") for i in range(6)]
               + [rec("a", f"r{i}", "real", "synthetic") for i in range(6, 10)]
               + [rec("a", f"s{i}", "synthetic", "real") for i in range(3)]
               + [rec("a", f"s{i}", "synthetic", "synthetic") for i in range(3, 10)])
    real = stats.verdict_metrics(records, "real")
    assert (real["tp"], real["fn"], real["fp"], real["tn"]) == (6, 4, 3, 7)
    assert real["accuracy"]["value"] == pytest.approx(13 / 20)
    assert real["precision"]["value"] == pytest.approx(6 / 9)
    assert real["recall"]["value"] == pytest.approx(6 / 10)
    synthetic = stats.verdict_metrics(records, "synthetic")
    assert synthetic["precision"]["value"] == pytest.approx(7 / 11)
    assert synthetic["recall"]["value"] == pytest.approx(7 / 10)
    # 13/20 correct: P(X >= 13 | n=20, p=.5) = 0.1316
    assert real["p_better_than_chance"] == pytest.approx(0.131588, abs=1e-5)


def test_unrated_records_are_ignored_and_pooled_row_exists():
    records = [rec("a", "1", "real", "real"), rec("b", "1", "real", "synthetic"),
               rec("b", "2", "real", None)]
    table = stats.verdicts_by_reviewer(records)
    assert set(table) == {"a", "b", "pooled"} and table["pooled"]["n"] == 2


def test_cohen_kappa_worked_example():
    a = ["real", "real", "synthetic", "synthetic"]
    b = ["real", "synthetic", "synthetic", "synthetic"]
    records = [rec("A", str(i), "real", v) for i, v in enumerate(a)] + \
              [rec("B", str(i), "real", v) for i, v in enumerate(b)]
    (pair,) = stats.cohen_pairs(records)
    # po = 3/4, pe = .5*.25 + .5*.75 = .5, kappa = (.75 - .5) / .5
    assert pair["kappa"] == pytest.approx(0.5) and pair["n"] == 4


def test_fleiss_kappa_matches_fleiss_1971_example():
    """The worked example of Fleiss' kappa: 10 subjects, 14 raters, 5 categories: 0.210."""
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    records = []
    for subject, counts in enumerate(table):
        rater = 0
        for category, count in enumerate(counts):
            for _ in range(count):
                records.append(rec(f"r{rater}", f"s{subject}", "real", f"c{category}"))
                rater += 1
    result = stats.fleiss(records)
    assert result["raters"] == 14 and result["n_images"] == 10
    assert result["kappa"] == pytest.approx(0.2099, abs=1e-4)


def test_krippendorff_alpha_ordinal():
    same = [rec(r, str(i), "real", "real", q) for r in "ABC"
            for i, q in enumerate(["good", "poor", "moderate", "good"])]
    assert stats.krippendorff_quality(same)["alpha"] == pytest.approx(1.0)
    near = [rec("A", str(i), "real", "real", q) for i, q in enumerate(["good", "poor", "moderate", "good"])]
    near += [rec("B", str(i), "real", "real", q) for i, q in enumerate(["moderate", "poor", "moderate", "good"])]
    far = near[:4] + [rec("B", str(i), "real", "real", q) for i, q in enumerate(["poor", "good", "moderate", "good"])]
    assert stats.krippendorff_quality(far)["alpha"] < stats.krippendorff_quality(near)["alpha"] < 1


def test_quality_and_histology_per_source():
    records = [rec("a", "1", "real", "real", "good", label="AD", histology="AD"),
               rec("a", "2", "synthetic", "real", "poor", "gen-a", "SSA", "HP"),
               rec("a", "3", "synthetic", "synthetic", "poor", "gen-a", "SSA", "SSA"),
               rec("a", "4", "synthetic", "real", "good", "gen-b", "HP", "unsure")]
    rows = {r["source"]: r for r in stats.quality_distribution(records)}
    assert (rows["gen-a"]["poor"], rows["gen-a"]["poor_share"]) == (2, 1.0)
    assert rows["real"]["good"] == 1
    histology = stats.histology_confusion(records)
    assert histology["gen-a"]["matrix"]["SSA"] == {"AD": 0, "SSA": 1, "HP": 1, "unsure": 0}
    assert histology["gen-a"]["agreement"]["value"] == 0.5


def test_export_writes_every_table(tmp_path):
    records = [rec(r, str(i), "real" if i % 2 else "synthetic", v, q)
               for r in "ABC" for i, (v, q) in enumerate(
                   [("real", "good"), ("synthetic", "poor"), ("real", "moderate"), ("real", "good")])]
    paths = stats.export_csv(records, tmp_path / "out")
    assert {p.name for p in paths} == {"ratings.csv", "verdicts.csv", "quality_by_source.csv",
                                      "quality_by_source_and_class.csv", "histology.csv",
                                      "agreement.csv"}
    with open(tmp_path / "out" / "verdicts.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 4  # A, B, C, pooled for each positive class
    with open(tmp_path / "out" / "agreement.csv") as handle:
        names = [r["statistic"] for r in csv.DictReader(handle)]
    assert names.count("cohen_kappa_verdict") == 3 and "fleiss_kappa_verdict" in names
