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


# a study worked by hand: two reviewers, four images --------------------------------------------

#: (reviewer, image, truth, verdict, quality, label, histology guess); sources: real, gen
HAND = [("A", "i0", "real", "real", "good", "AD", "AD"),
        ("A", "i1", "real", "synthetic", "moderate", "HP", "HP"),
        ("A", "i2", "synthetic", "synthetic", "poor", "AD", None),
        ("A", "i3", "synthetic", "unsure", "good", "HP", None),
        ("B", "i0", "real", "real", "good", "AD", "unsure"),
        ("B", "i1", "real", "real", "good", "HP", "HP"),
        ("B", "i2", "synthetic", "real", "moderate", "AD", "AD"),
        ("B", "i3", "synthetic", "synthetic", "poor", "HP", "SSA")]


def hand_records() -> list[dict]:
    return [rec(r, i, t, v, q, label=lab, histology=h) for r, i, t, v, q, lab, h in HAND]


def test_verdicts_of_a_study_worked_by_hand():
    """Real as positive, decisive answers only (A's 'unsure' on i3 counted apart): TP 3 (A i0,
    B i0, B i1), FN 1 (A i1), FP 1 (B i2), TN 2 (A i2, B i3). Accuracy 5/7, precision 3/4,
    recall 3/4, specificity 2/3; balanced accuracy (3/4 + 2/3)/2 = 17/24 with half-width
    z·sqrt((3/16)/4 + (2/9)/3)/2 = 0.340816 (upper end clipped to 1). Fisher's table
    [[3, 1], [1, 2]]: margins 4, 3 / 4, 3 of 7; P(TP = 1..4) = 4, 18, 12, 1 of 35; one-sided
    P(TP >= 3) = 13/35; two-sided, the tables no likelier than the observed: (4 + 12 + 1)/35.
    Synthetic as positive swaps the roles: TP 2, FN 1, FP 1, TN 3."""
    m = stats.verdict_metrics(stats.rated(hand_records()), "real")
    assert (m["positive"], m["n"], m["n_unsure"]) == ("real", 7, 1)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 1, 2)
    for name, (k, n) in {"accuracy": (5, 7), "precision": (3, 4), "recall": (3, 4),
                         "specificity": (2, 3)}.items():
        low, high = stats.wilson(k, n)
        assert m[name] == {"value": pytest.approx(k / n), "low": low, "high": high, "k": k, "n": n}
    assert m["balanced_accuracy"] == pytest.approx({"value": 17 / 24, "low": 17 / 24 - 0.340816,
                                                    "high": 1.0}, abs=1e-6)
    assert m["p_discrimination"] == pytest.approx(13 / 35)
    assert m["p_fisher_two_sided"] == pytest.approx(17 / 35)
    s = stats.verdict_metrics(stats.rated(hand_records()), "synthetic")
    assert (s["positive"], s["tp"], s["fn"], s["fp"], s["tn"]) == ("synthetic", 2, 1, 1, 3)
    with pytest.raises(ValueError, match="positive must be 'real' or 'synthetic'"):
        stats.verdict_metrics([], "fake")
    nothing = stats.verdict_metrics([rec("A", "i0", "real", "unsure")])
    assert (nothing["n"], nothing["n_unsure"]) == (0, 1)
    assert math.isnan(nothing["p_discrimination"]) and math.isnan(nothing["p_fisher_two_sided"])
    assert math.isnan(nothing["balanced_accuracy"]["value"])
    # per reviewer: A TP 1 FN 1 TN 1 (one unsure); B TP 2 FP 1 TN 1; and the pooled row
    by = stats.verdicts_by_reviewer(hand_records() + [rec("C", "i0", "real", None)], "real")
    assert list(by) == ["A", "B", "pooled"]  # C rated nothing
    assert [(by[k]["tp"], by[k]["fn"], by[k]["fp"], by[k]["tn"], by[k]["n_unsure"])
            for k in by] == [(1, 1, 0, 1, 1), (2, 0, 1, 1, 0), (3, 1, 1, 2, 1)]
    assert stats.verdicts_by_reviewer(hand_records(), "synthetic")["pooled"]["tp"] == 2


def test_quality_histology_and_kappa_of_the_study_worked_by_hand():
    """Quality by source: real (i0, i1) good 3, moderate 1; gen (i2, i3) good 1, moderate 1,
    poor 2. By source and class: real AD good 2 (i0 twice); real HP good 1, moderate 1.
    Histology, per source: real AD guessed AD once and unsure once, HP guessed HP twice (3 of 4
    right); gen AD guessed AD once, HP guessed SSA once (1 of 2). Cohen's kappa of A and B's
    verdicts [real, synthetic, synthetic, unsure] against [real, real, real, synthetic]:
    agreement 1/4, chance 1/4·3/4 + 2/4·1/4 = 5/16, kappa (1/4 - 5/16)/(11/16) = -1/11."""
    rows = stats.quality_distribution(hand_records())
    assert rows == [
        {"source": "gen", "n": 4, "good": 1, "good_share": 0.25, "moderate": 1,
         "moderate_share": 0.25, "poor": 2, "poor_share": 0.5},
        {"source": "real", "n": 4, "good": 3, "good_share": 0.75, "moderate": 1,
         "moderate_share": 0.25, "poor": 0, "poor_share": 0.0}]
    by_class = stats.quality_distribution(hand_records(), ("source", "label"))
    assert [(r["source"], r["label"], r["n"], r["good"]) for r in by_class] == [
        ("gen", "AD", 2, 0), ("gen", "HP", 2, 1), ("real", "AD", 2, 2), ("real", "HP", 2, 1)]
    histology = stats.histology_confusion(hand_records())
    assert histology == {
        "gen": {"matrix": {"AD": {"AD": 1, "SSA": 0, "HP": 0, "unsure": 0},
                           "HP": {"AD": 0, "SSA": 1, "HP": 0, "unsure": 0}},
                "n": 2, "agreement": stats._ratio(1, 2)},
        "real": {"matrix": {"AD": {"AD": 1, "SSA": 0, "HP": 0, "unsure": 1},
                            "HP": {"AD": 0, "SSA": 0, "HP": 2, "unsure": 0}},
                 "n": 4, "agreement": stats._ratio(3, 4)}}
    (pair,) = stats.cohen_pairs(hand_records())
    assert (pair["a"], pair["b"], pair["n"]) == ("A", "B", 4)
    assert pair["kappa"] == pytest.approx(-1 / 11) and pair["raw_agreement"] == 0.25
    # one answer from both throughout: kappa undefined, agreement 1; fewer than 2 shared images:
    # no pair
    same = [rec(r, i, "real", "real") for r in "AB" for i in ("i0", "i1")]
    assert math.isnan(stats.cohen_pairs(same)[0]["kappa"])
    assert stats.cohen_pairs(same)[0]["raw_agreement"] == 1.0
    assert stats.cohen_pairs([rec("A", "i0", "real", "real"), rec("B", "i0", "real", "real")]) == []


def test_a_share_over_images_and_its_exact_bootstrap_bounds():
    """Hits [1, 0, 1, 1] on images a, a, b, c: share 3/4 over 3 images. A replicate draws three
    images: all three 'a' (probability 1/27 = 3.7 %) gives 1/2, the lowest possible; no 'a'
    (8/27) gives 1. So the 2.5th percentile is 1/2 and the 97.5th is 1."""
    share = stats.clustered_share([True, False, True, True], ["a", "a", "b", "c"], n_boot=4000)
    assert share == {"value": 0.75, "low": 0.5, "high": 1.0, "n": 4, "cases": 3}
    empty = stats.clustered_share([], [])
    assert (empty["n"], empty["cases"]) == (0, 0) and math.isnan(empty["value"])


def test_the_export_writes_each_table_with_its_columns(tmp_path):
    """The CSV files' header lines, and the verdict rows of the hand-worked study."""
    paths = stats.export_csv(hand_records(), tmp_path / "out")
    def header(name):
        with open(tmp_path / "out" / name) as handle:
            return next(csv.reader(handle))
    def rows(name):
        with open(tmp_path / "out" / name) as handle:
            return list(csv.DictReader(handle))
    assert header("verdicts.csv") == [
        "positive", "reviewer", "n", "tp", "fn", "fp", "tn", "accuracy", "accuracy_low",
        "accuracy_high", "precision", "precision_low", "precision_high", "recall", "recall_low",
        "recall_high", "specificity", "specificity_low", "specificity_high", "balanced_accuracy",
        "balanced_accuracy_low", "balanced_accuracy_high", "n_unsure", "p_discrimination",
        "p_fisher_two_sided"]
    pooled = next(r for r in rows("verdicts.csv")
                  if r["positive"] == "real" and r["reviewer"] == "pooled")
    assert (pooled["tp"], pooled["fn"], pooled["fp"], pooled["tn"], pooled["n_unsure"]) == \
        ("3", "1", "1", "2", "1")
    assert float(pooled["p_discrimination"]) == pytest.approx(13 / 35)
    assert float(pooled["balanced_accuracy"]) == pytest.approx(17 / 24)
    assert [r["positive"] + ":" + r["reviewer"] for r in rows("verdicts.csv")] == [
        "real:A", "real:B", "real:pooled", "synthetic:A", "synthetic:B", "synthetic:pooled"]
    assert header("histology.csv") == ["source", "true_class", "guess", "count"]
    assert {"source": "real", "true_class": "AD", "guess": "unsure", "count": "1"} in \
        rows("histology.csv")
    agreement = rows("agreement.csv")
    assert header("agreement.csv") == ["statistic", "a", "b", "n", "value"]
    assert [r["statistic"] for r in agreement] == [
        "cohen_kappa_verdict", "fleiss_kappa_verdict", "krippendorff_alpha_quality_ordinal",
        "gwet_ac1_verdict"]
    assert float(agreement[0]["value"]) == pytest.approx(-1 / 11) and agreement[0]["n"] == "4"
    assert header("quality_by_source.csv") == ["source", "n", "good", "good_share", "moderate",
                                               "moderate_share", "poor", "poor_share"]
    assert header("reader_auc.csv") == ["reviewer", "auc", "auc_low", "auc_high", "n_real",
                                        "n_synthetic"]
    # no answer times and no repeats in this study: those tables are written empty
    assert rows("pace.csv") == [] and rows("consistency.csv") == []
    assert (tmp_path / "out" / "mrmc.txt").read_text().endswith("\n")
    assert [p.name for p in paths][-2:] == ["study.imrmc", "mrmc.txt"]


def test_a_seeded_share_interval_is_repeatable_and_its_defaults_are_the_documented_ones():
    """Twelve images of 1-5 ratings each: the interval of the seeded default bootstrap (2,000
    replicates, seed 0) pinned to its printed value; another seed moves it."""
    import inspect

    cases = [f"c{k}" for k in range(12) for _ in range(k % 5 + 1)]
    hits = [(i * 7) % 5 < 3 for i in range(len(cases))]
    share = stats.clustered_share(hits, cases)
    assert (share["value"], share["n"], share["cases"]) == (pytest.approx(20 / 33), 33, 12)
    assert (round(share["low"], 4), round(share["high"], 4)) == (0.5517, 0.68)
    assert round(stats.clustered_share(hits, cases, seed=1)["low"], 4) == 0.5526
    defaults = inspect.signature(stats.clustered_share).parameters
    assert (defaults["n_boot"].default, defaults["seed"].default) == (2000, 0)


def test_study_statistics_reads_main_answers_and_counts_the_rest_apart(tmp_path):
    """The hand-worked study plus a repeat of A's first image and an unanswered assignment: ten
    assignments, nine answered, one of them a repeat; every table is computed from the eight
    main answers (the repeat only in test-retest and pace)."""
    from polyp_core.review import reader

    main = hand_records()
    repeat = {**main[0], "kind": "repeat"}
    unanswered = rec("B", "i9", "real", None)
    result = stats.study_statistics(main + [repeat, unanswered])
    assert set(result) == {
        "consistency", "n_repeat_or_calibration", "reader_roc", "mrmc", "pace", "per_source",
        "ac1_verdict", "n_assignments", "n_rated", "verdicts_real_positive",
        "verdicts_synthetic_positive", "quality_by_source", "quality_by_source_and_class",
        "histology_by_source", "cohen_verdict", "fleiss_verdict", "krippendorff_quality",
        "mask_quality"}
    assert (result["n_assignments"], result["n_rated"], result["n_repeat_or_calibration"]) == \
        (10, 9, 1)
    assert result["verdicts_real_positive"] == stats.verdicts_by_reviewer(main, "real")
    assert result["verdicts_synthetic_positive"] == stats.verdicts_by_reviewer(main, "synthetic")
    assert result["verdicts_synthetic_positive"]["pooled"]["tp"] == 2
    assert result["quality_by_source"] == stats.quality_distribution(main)
    assert result["quality_by_source_and_class"] == stats.quality_distribution(
        main, ("source", "label"))
    assert result["histology_by_source"] == stats.histology_confusion(main)
    assert result["cohen_verdict"][0]["kappa"] == pytest.approx(-1 / 11)
    assert result["fleiss_verdict"] == stats.fleiss(main)
    assert result["krippendorff_quality"] == stats.krippendorff_quality(main)
    assert result["mask_quality"] == {}
    assert result["per_source"] == reader.per_source(main)
    assert result["consistency"] == reader.consistency(main + [repeat])
    assert result["consistency"]["A"]["repeats"] == 1 and result["consistency"]["A"]["exact"] == 1.0
    # AC1 over the three answers (real, synthetic, unsure), even where nobody said 'unsure'
    decisive = [r for r in main if r["verdict"] != "unsure"]
    three = stats.study_statistics(decisive)["ac1_verdict"]
    assert three == reader.ac1_of(decisive, "verdict", ("real", "synthetic", "unsure"))
    assert three["ac1"] != reader.ac1_of(decisive, "verdict", ("real", "synthetic"))["ac1"]


def test_the_export_makes_its_folder_and_may_write_it_again(tmp_path):
    nested = tmp_path / "a" / "b"
    first = stats.export_csv(hand_records(), nested)
    again = stats.export_csv(hand_records(), nested)
    assert [p.name for p in first] == [p.name for p in again] and (nested / "verdicts.csv").is_file()


def test_the_edges_of_the_verdict_and_quality_tables():
    """No decisive answer: balanced accuracy is NaN in every field. The per-reviewer tables
    follow the positive class asked for (B found 1 synthetic image, 2 real ones). A class label
    that is missing sorts beside the others instead of breaking the table."""
    nothing = stats.verdict_metrics([rec("A", "i0", "real", "unsure")])
    assert set(nothing["balanced_accuracy"]) == {"value", "low", "high"}
    assert all(math.isnan(v) for v in nothing["balanced_accuracy"].values())
    with pytest.raises(ValueError, match="^positive must be 'real' or 'synthetic'$"):
        stats.verdict_metrics([], "fake")
    assert stats.verdicts_by_reviewer(hand_records(), "synthetic")["B"]["tp"] == 1
    assert stats.verdicts_by_reviewer(hand_records(), "real")["B"]["tp"] == 2
    unlabelled = hand_records() + [rec("A", "i5", "real", "real", label=None)]
    rows = stats.quality_distribution(unlabelled, ("source", "label"))
    assert [(r["source"], r["label"]) for r in rows] == [
        ("gen", "AD"), ("gen", "HP"), ("real", "AD"), ("real", "HP"), ("real", None)]
    empty = stats.clustered_share([], [])
    assert set(empty) == {"value", "low", "high", "n", "cases"}
    assert all(math.isnan(empty[k]) for k in ("value", "low", "high"))
    # AC1 of the verdicts counts 'unsure' as an answer of its own
    main = hand_records()
    assert stats.study_statistics(main)["ac1_verdict"] == \
        stats.reader.ac1_of(main, "verdict", ("real", "synthetic", "unsure"))


def test_fleiss_and_krippendorff_at_their_edges():
    """Fleiss: nothing rated; two readers per image (needs three, and says so); the most
    common number of readers decides which images count (two images of 3 readers beat one of
    4); one category throughout has no kappa; exactly 3 readers and two categories do.
    Krippendorff: nothing rated, one value throughout (no alpha), and the ordinal level (not
    interval) on unequal marginals."""
    import krippendorff

    def q(reviewer, image, answer):
        return {**rec(reviewer, image, "real", "real"), "quality": answer}

    empty = stats.fleiss([])
    assert set(empty) == {"kappa", "n_images", "raters"} and math.isnan(empty["kappa"])
    assert (empty["n_images"], empty["raters"]) == (0, 0)
    two = stats.fleiss([rec(r, "i0", "real", v) for r, v in (("A", "real"), ("B", "synthetic"))])
    assert (two["n_images"], two["raters"]) == (0, 2) and math.isnan(two["kappa"])
    assert two["note"] == "Fleiss' kappa needs images rated by three or more reviewers"
    answers = {"i0": "real real synthetic", "i1": "synthetic synthetic synthetic",
               "i2": "real synthetic real real"}
    mixed = [rec("ABCD"[k], image, "real", v) for image, vs in answers.items()
             for k, v in enumerate(vs.split())]
    three = stats.fleiss(mixed)
    assert (three["raters"], three["n_images"]) == (3, 2)
    # table rows (real, synthetic): [2, 1], [0, 3]; P_i = (2 + 0)/6 = 1/3 and 1; P-bar 2/3;
    # p_j = 2/6, 4/6; P_e = 1/9 + 4/9 = 5/9; kappa (2/3 - 5/9)/(4/9) = 1/4
    assert three["kappa"] == pytest.approx(0.25)
    same = stats.fleiss([rec(r, "i0", "real", "real") for r in "ABC"])
    assert math.isnan(same["kappa"]) and same["n_images"] == 1

    assert stats.krippendorff_quality([]) == {"alpha": pytest.approx(math.nan, nan_ok=True),
                                              "n_images": 0}
    flat = stats.krippendorff_quality([q(r, i, "good") for r in "AB" for i in ("i0", "i1")])
    assert math.isnan(flat["alpha"]) and flat["n_images"] == 2
    table = [("good", "good"), ("good", "moderate"), ("good", "good"), ("poor", "moderate"),
             ("poor", "poor"), ("good", "poor"), ("good", "good")]
    records = [q(r, f"i{k}", pair[j]) for k, pair in enumerate(table) for j, r in enumerate("AB")]
    got = stats.krippendorff_quality(records)
    rank = {"poor": 0, "moderate": 1, "good": 2}
    data = np.array([[rank[p[j]] for p in table] for j in range(2)], float)
    ordinal = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal",
                                 value_domain=[0, 1, 2])
    interval = krippendorff.alpha(reliability_data=data, level_of_measurement="interval")
    assert got == {"alpha": pytest.approx(ordinal), "n_images": 7}
    assert abs(ordinal - interval) > 1e-3  # the level matters on this table
    two_values = stats.krippendorff_quality([q(r, i, a) for i, pair in
                                             enumerate([("good", "poor"), ("poor", "poor"),
                                                        ("good", "good")])
                                             for r, a in zip("AB", pair)])
    assert not math.isnan(two_values["alpha"])
    # no image rated twice: no alpha (the library would refuse), even with two values
    lonely = stats.krippendorff_quality([q("A", "i0", "good"), q("B", "i1", "poor")])
    assert math.isnan(lonely["alpha"]) and lonely["n_images"] == 0
    # one image rated twice, good and poor: coincidences o(0,2) = o(2,0) = 1, n = 2; the
    # ordinal distance counts only the two values seen: (2 - (1 + 1)/2)^2 = 1; alpha =
    # 1 - (n - 1) · 2 / (1 · 1 · 1 · 2) = 0
    single = stats.krippendorff_quality([q("A", "i0", "good"), q("B", "i0", "poor"),
                                         q("A", "i1", "moderate")])
    assert single == {"alpha": pytest.approx(0.0, abs=1e-12), "n_images": 1}


def test_a_pair_with_too_few_shared_images_is_skipped_not_the_rest():
    """A and B share one image (no pair); A and C share two: that pair is still computed."""
    records = [rec("A", "i0", "real", "real"), rec("B", "i0", "real", "real"),
               rec("A", "i1", "real", "synthetic"), rec("C", "i1", "real", "synthetic"),
               rec("A", "i2", "real", "real"), rec("C", "i2", "real", "synthetic")]
    assert [(p["a"], p["b"], p["n"]) for p in stats.cohen_pairs(records)] == [("A", "C", 2)]
