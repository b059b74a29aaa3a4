"""Reader-study statistics against values known from the literature or worked by hand."""

import csv
import math

import numpy as np
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
    # all or none of 16 and 21: the bounds are exactly 1 and 0, though the formula's rounding
    # lands a hair outside (1 + 2e-16, -1e-17) and is clipped
    assert stats.wilson(16, 16)[1] == 1.0 and stats.wilson(0, 21)[0] == 0.0


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
    assert real["balanced_accuracy"]["value"] == pytest.approx((6 / 10 + 7 / 10) / 2)
    # Fisher's exact test, one-sided: P(TP >= 6) for the hypergeometric of 20 answers, 10 real
    # images and 9 "real" verdicts, summed by hand
    hand = sum(math.comb(9, k) * math.comb(11, 10 - k) for k in range(6, 10)) / math.comb(20, 10)
    assert real["p_discrimination"] == pytest.approx(hand, rel=1e-12)


def test_always_synthetic_on_a_two_to_one_study_is_chance_not_significant():
    """Two synthetic images for each real one: a reviewer who always answers "synthetic" is
    67% accurate; balanced accuracy is 0.5 and no test calls it discrimination."""
    records = ([rec("lazy", f"r{i}", "real", "synthetic") for i in range(20)]
               + [rec("lazy", f"s{i}", "synthetic", "synthetic") for i in range(40)])
    m = stats.verdict_metrics(records, "real")
    assert m["accuracy"]["value"] == pytest.approx(40 / 60)
    assert m["balanced_accuracy"]["value"] == pytest.approx(0.5)
    assert m["p_discrimination"] == pytest.approx(1.0) and m["p_fisher_two_sided"] == 1.0
    from scipy.stats import binomtest
    assert binomtest(40, 60, 0.5, alternative="greater").pvalue < 0.01  # what the old test said
    from polyp_core.review.reader import reader_rocs
    assert reader_rocs(records)["lazy"]["auc"] == pytest.approx(0.5)


def test_unsure_answers_are_counted_apart_from_the_binary_table():
    records = [rec("a", "1", "real", "real"), rec("a", "2", "synthetic", "unsure"),
               rec("a", "3", "synthetic", "synthetic")]
    m = stats.verdict_metrics(records, "real")
    assert (m["n"], m["n_unsure"], m["tp"], m["tn"]) == (2, 1, 1, 1)


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
                                      "agreement.csv", "reader_auc.csv", "pace.csv",
                                      "per_source.csv", "study.imrmc", "mrmc.txt",
                                      "consistency.csv"}
    from polyp_core.review.mrmc import read_imrmc
    data = read_imrmc(tmp_path / "out" / "study.imrmc")
    assert data.readers == ["A", "B", "C"] and len(data.truth) == 4
    with open(tmp_path / "out" / "verdicts.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 4  # A, B, C, pooled for each positive class
    with open(tmp_path / "out" / "agreement.csv") as handle:
        names = [r["statistic"] for r in csv.DictReader(handle)]
    assert names.count("cohen_kappa_verdict") == 3 and "fleiss_kappa_verdict" in names


# the reader study: AC1, ROC per reader, OR analysis, pace, per source --------------------------

NA = None
CAC_RAW4RATERS = [[1, 1, NA, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2],
                  [1, 2, 3, 4], [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [NA, 5, 5, 5],
                  [NA, NA, 1, 1], [NA, NA, 3, NA]]


def test_gwet_ac1_reproduces_the_published_example():
    """irrCAC's cac.raw4raters (Gwet 2014, Handbook of Inter-Rater Reliability): 12 units,
    4 raters, categories 1-5, missing ratings: AC1 0.77544, pa 0.81818, pe 0.19032. (irrCAC
    itself pins numpy < 2, which this studio cannot install beside torch, hence our own.)"""
    from polyp_core.review.reader import gwet_ac1

    result = gwet_ac1(CAC_RAW4RATERS, categories=(1, 2, 3, 4, 5))
    assert result["ac1"] == pytest.approx(0.77544, abs=5e-6)
    assert result["pa"] == pytest.approx(0.81818, abs=5e-6)
    assert result["pe"] == pytest.approx(0.19032, abs=5e-6)
    assert (result["n_units"], result["n_paired"]) == (12, 11)


def simulated_study(seed=0, n_real=20, per_generator=20, readers=("a", "b", "c", "d"),
                    sharp=("gen-bad", 2.0), blunt=("gen-good", 0.0)):
    """Every reader rates every image on the five-point scale: real images look real; one
    generator's images are easy to spot, the other's not at all."""
    rng = np.random.default_rng(seed)
    records = []
    images = [(f"r{i}", "real", "real", 1.0) for i in range(n_real)]
    for source, shift in (sharp, blunt):
        images += [(f"{source}-{i}", "synthetic", source, 1.0 - shift) for i in range(per_generator)]
    for reader in readers:
        for image, truth, source, realness in images:
            confidence = int(np.clip(np.round(3 - realness - rng.normal(0, 0.8)), 1, 5))
            verdict = "real" if confidence <= 2 else "synthetic" if confidence >= 4 else "unsure"
            records.append({"reviewer": reader, "image": image, "truth": truth, "source": source,
                            "label": "AD", "verdict": verdict, "confidence": confidence,
                            "quality": "good", "histology": None,
                            "seconds": 0.5 if reader == "d" else 4.0})
    return records


def test_reader_study_tells_a_detectable_generator_from_an_undetectable_one():
    from polyp_core.review import reader

    records = simulated_study()
    rocs = reader.reader_rocs(records)
    assert set(rocs) == {"a", "b", "c", "d"} and all(0.5 < r["auc"] < 1 for r in rocs.values())
    assert all(r["low"] < r["auc"] < r["high"] for r in rocs.values())
    assert rocs["a"]["roc"][0] == (0.0, 0.0) and rocs["a"]["roc"][-1] == (1.0, 1.0)
    study = reader.reader_study(records)
    assert study["pooled"]["available"] and study["pooled"]["cases_kept"] == 60
    generators = study["generators"]
    good, bad = generators["single"]["gen-good"], generators["single"]["gen-bad"]
    assert bad["ci"][0] > 0.5  # readers spot it
    assert good["ci"][0] < 0.5 < good["ci"][1] and "cannot tell" in good["reading"]
    (pair,) = generators["comparison"]["pairs"]
    assert (pair["a"], pair["b"]) == ("gen-bad", "gen-good") and pair["diff"] > 0
    assert pair["ci"][0] > 0 and generators["comparison"]["p"] < 0.05
    pace = reader.pace(records)
    assert pace["d"]["too_fast"] and not pace["a"]["too_fast"] and pace["a"]["median"] == 4.0
    sources = {(r["source"], r["class"]): r for r in reader.per_source(records)}
    assert sources[("gen-bad", "all")]["called_synthetic"] > sources[("gen-good", "all")][
        "called_synthetic"]
    assert sources[("gen-bad", "all")]["auc_vs_real"] > 0.8
    ac1 = reader.ac1_of(records, "verdict", ("real", "synthetic", "unsure"))
    # the seeded study's value, and Gwet's formula from its own parts
    assert ac1["ac1"] == pytest.approx(0.439756, abs=5e-7) and ac1["n_paired"] == 60
    assert ac1["ac1"] == pytest.approx((ac1["pa"] - ac1["pe"]) / (1 - ac1["pe"]), abs=1e-12)


def test_reader_study_says_why_when_the_design_cannot_carry_it():
    from polyp_core.review import reader

    records = [r for r in simulated_study() if r["reviewer"] == "a"]
    study = reader.reader_study(records)
    assert not study["pooled"]["available"] and "two readers" in study["pooled"]["reason"]
