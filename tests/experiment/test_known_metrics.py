"""Known answers, worked by hand, for the classification metrics, the cluster bootstrap's
parts and the leak audit's measures: the tests the mutation run (tests/MUTATION.md) relies on
for ``classify.metrics``, ``stats.uncertainty`` and ``review.leaks``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from polyp_core.stats import uncertainty as u
from polyp_core.classify.metrics import classification_metrics, compare_arms, summarise_arm
from polyp_core.stats.seeds import paired_difference, spread

#: truth rows x predicted columns; class 2 is never true and predicted once
CONFUSION = np.array([[3, 1, 0], [1, 2, 1], [0, 0, 0]])
#: worked from CONFUSION: precision 3/4, 2/3, 0/1; recall 3/4, 2/4, none (0); F1 3/4,
#: 2(2/3)(1/2)/(2/3 + 1/2) = 4/7, 0; macro-F1 over the classes present (0, 1): (3/4 + 4/7)/2
#: = 37/56; balanced accuracy (3/4 + 1/2)/2 = 5/8
PRECISION, RECALL, F1 = [0.75, 2 / 3, 0.0], [0.75, 0.5, 0.0], [0.75, 4 / 7, 0.0]


def _labels_from(confusion: np.ndarray) -> tuple[list[int], list[int]]:
    y, p = [], []
    for t in range(len(confusion)):
        for q in range(len(confusion)):
            y += [t] * int(confusion[t, q])
            p += [q] * int(confusion[t, q])
    return y, p


def test_metrics_of_a_confusion_worked_by_hand():
    """Catches: precision and recall swapped (axes), a class that is never true counted in the
    macro means, F1 as the arithmetic mean, a zero-division that yields NaN."""
    m = u._metrics_from_confusion(CONFUSION.astype(float))
    assert m["precision"] == pytest.approx(PRECISION) and m["recall"] == pytest.approx(RECALL)
    assert m["f1"] == pytest.approx(F1)
    assert m["macro_f1"] == pytest.approx(37 / 56) and m["balanced_accuracy"] == pytest.approx(5 / 8)
    stacked = u._metrics_from_confusion(np.stack([CONFUSION, np.eye(3) * 2]).astype(float))
    assert stacked["macro_f1"] == pytest.approx([37 / 56, 1.0])
    empty = u._metrics_from_confusion(np.zeros((3, 3)))
    assert np.isnan(empty["macro_f1"]) and np.isnan(empty["balanced_accuracy"])
    assert empty["f1"].tolist() == [0.0, 0.0, 0.0]
    # the engine's per-run metrics (scikit-learn underneath) give the same numbers
    y, p = _labels_from(CONFUSION)
    plain = classification_metrics(y, p, ("AD", "SSA", "HP"))
    assert plain["macro_f1"] == pytest.approx(37 / 56)
    assert plain["balanced_accuracy"] == pytest.approx(5 / 8)
    assert plain["accuracy"] == pytest.approx(5 / 8)  # (3 + 2) of 8
    assert plain["confusion"] == CONFUSION.tolist() and plain["classes"] == ["AD", "SSA", "HP"]
    assert [plain["per_class"][c]["precision"] for c in ("AD", "SSA", "HP")] == \
        pytest.approx(PRECISION)
    assert [plain["per_class"][c]["support"] for c in ("AD", "SSA", "HP")] == [4, 4, 0]
    assert [plain["per_class"][c]["recall"] for c in ("AD", "SSA", "HP")] == pytest.approx(RECALL)
    assert [plain["per_class"][c]["f1"] for c in ("AD", "SSA", "HP")] == pytest.approx(F1)
    with pytest.raises(ValueError, match="1-D of one length"):
        classification_metrics([0, 1], [0], ("AD", "SSA"))
    with pytest.raises(ValueError, match="^no test images to score$"):
        classification_metrics([], [], ("AD", "SSA"))


def test_a_class_nobody_has_keeps_its_place_and_a_class_of_one_counts():
    """Classes AD, SSA, HP; truth [AD, AD, HP], predicted [AD, HP, HP]: SSA is neither true nor
    predicted. Its row and column stay (3 x 3 confusion, zeros) and it is left out of the macro
    means; HP, true once, counts. AD: precision 1, recall 1/2, F1 2/3; HP: precision 1/2,
    recall 1, F1 2/3; macro-F1 2/3, balanced accuracy 3/4, accuracy 2/3. No warning for the
    undefined SSA precision (reported as 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics([0, 0, 2], [0, 2, 2], ("AD", "SSA", "HP"))
    assert m["confusion"] == [[1, 0, 1], [0, 0, 0], [0, 0, 1]]
    assert m["per_class"]["SSA"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_class"]["AD"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3,
                                                  "support": 1 + 1})
    assert m["per_class"]["HP"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3,
                                                  "support": 1})
    assert m["macro_f1"] == pytest.approx(2 / 3) and m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(2 / 3)
    # HP, true once and never found, still counts in the macro means: AD F1 0.8 (precision 2/3,
    # recall 1), HP F1 0: macro-F1 0.4, balanced accuracy 0.5
    once = classification_metrics([0, 0, 2], [0, 0, 0], ("AD", "SSA", "HP"))
    assert once["macro_f1"] == pytest.approx(0.4) and once["balanced_accuracy"] == 0.5


def test_weighted_confusions_count_each_image_as_often_as_it_was_drawn():
    """Truth [0, 1, 1], predictions [0, 1, 0], weights [1, 2, 0] and [0, 1, 3]: the first
    replicate holds one right 0 and two right 1s; the second one right 1 and three 1s called 0."""
    out = u._confusions(np.array([0, 1, 1]), np.array([[0, 1, 0]]),
                        np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]]), 2)
    assert out.shape == (2, 1, 2, 2)
    assert out[0, 0].tolist() == [[1, 0], [0, 2]] and out[1, 0].tolist() == [[0, 0], [3, 1]]


def test_a_replicate_draws_whole_groups_and_averages_its_drawn_seeds():
    """Groups b, a, b: images 0 and 2 always carry the same weight, and each replicate's
    weights of the two groups add up to 2 draws. Values (1 replicate, 3 seeds) [1, 2, NaN]
    with seeds drawn [0, 0, 2] average to 1 (NaN left out); drawn [2, 2, 2], to NaN."""
    weights, seeds = u._draws(["b", "a", "b"], 3, 50, np.random.default_rng(0))
    assert weights.shape == (50, 3) and seeds.shape == (50, 3)
    assert (weights[:, 0] == weights[:, 2]).all()
    assert ((weights[:, 0] + weights[:, 1]) == 2).all() and set(np.unique(weights)) <= {0, 1, 2}
    assert seeds.min() >= 0 and seeds.max() <= 2 and len(np.unique(seeds)) == 3
    values = np.array([[1.0, 2.0, np.nan]])
    assert u._seed_average(values, np.array([[0, 0, 2]])).tolist() == [1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(u._seed_average(values, np.array([[2, 2, 2]]))[0])
    per_class = np.array([[[1.0, 3.0], [5.0, 7.0]]])  # (B, S, K): seed 1 drawn twice
    assert u._seed_average(per_class, np.array([[1, 1]])).tolist() == [[5.0, 7.0]]


def test_the_interval_is_the_percentile_pair_of_the_finite_replicates():
    """Replicates 0..100 (and two NaNs): the 95% interval is [2.5, 97.5], the 90% one
    [5, 95]; no finite replicate gives NaN bounds. Score means: scores [1, NaN, 3] weighted
    [2, 1, 1] average (2 + 3)/3."""
    reps = np.concatenate([np.arange(101.0), [np.nan, np.nan]])
    assert u._interval(7.0, reps, 0.95) == pytest.approx({"estimate": 7.0, "low": 2.5,
                                                          "high": 97.5})
    assert u._interval(7.0, reps, 0.90) == pytest.approx({"estimate": 7.0, "low": 5.0,
                                                          "high": 95.0})
    none = u._interval(1.0, np.array([np.nan]), 0.95)
    assert none["estimate"] == 1.0 and np.isnan(none["low"]) and np.isnan(none["high"])
    means = u._score_means(np.array([[1.0, np.nan, 3.0]]), np.array([[2.0, 1.0, 1.0]]))
    assert means.tolist() == [[pytest.approx(5 / 3)]]


def test_bootstrap_of_two_lesions_matches_its_exact_distribution():
    """Two lesions of two frames: treated scores 1 on lesion A and equals control on B. The
    replicate's paired difference is 1 (A drawn twice, p 1/4), 1/2 (once each, 1/2) or 0 (B
    twice, 1/4): estimate 1/2, interval [0, 1], p = 2 · min(P(<= 0), P(>= 0)) = 2 · 1/4 = 1/2
    (within 0.05: 3 binomial SEs at 2000 draws). Catches: a one-sided p, the shares swapped,
    frames drawn instead of lesions (the interval shrinks)."""
    groups = ["A", "A", "B", "B"]
    control = np.array([[0.0, 0.0, 0.5, 0.5]])
    treated = np.array([[1.0, 1.0, 0.5, 0.5]])
    delta = u.paired_cluster_bootstrap_scores(treated, control, groups, n_boot=2000, seed=0)
    assert delta["estimate"] == pytest.approx(0.5)
    assert (delta["low"], delta["high"]) == (0.0, 1.0)
    assert delta["p"] == pytest.approx(0.5, abs=0.05)
    assert (delta["groups"], delta["seeds"], delta["n_boot"]) == (2, 1, 2000)
    one = u.cluster_bootstrap_scores(treated, groups, n_boot=2000, seed=0)
    assert one["estimate"] == pytest.approx(0.75) and (one["low"], one["high"]) == (0.5, 1.0)
    with pytest.raises(ValueError, match="same seeds and test images"):
        u.paired_cluster_bootstrap_scores(treated, control[:, :3], groups)
    # the classification version: lesion A (2 frames of class 0) right in the treated arm
    # only, lesion B (2 frames of class 1) right in both
    y = [0, 0, 1, 1]
    paired = u.paired_cluster_bootstrap(y, [[0, 0, 1, 1]], [[1, 1, 1, 1]], groups,
                                        ("AD", "HP"), n_boot=2000, seed=0)
    # treated balanced accuracy 1; control recalls 0 and 1: 1/2; the difference 1/2, and in
    # replicates of only lesion B (one class present) 0
    assert paired["balanced_accuracy"]["estimate"] == pytest.approx(0.5)
    assert paired["balanced_accuracy"]["p"] == pytest.approx(0.5, abs=0.05)
    assert paired["per_class"]["AD"]["recall"]["estimate"] == pytest.approx(1.0)
    assert paired["per_class"]["HP"]["precision"]["estimate"] == pytest.approx(0.5)
    assert (paired["groups"], paired["seeds"]) == (2, 1)
    with pytest.raises(ValueError, match="same seeds and test images"):
        u.paired_cluster_bootstrap(y, [[0, 0, 1, 1]], [[1, 1, 1, 1], [1, 1, 1, 1]], groups,
                                   ("AD", "HP"))
    single = u.cluster_bootstrap(y, [[0, 0, 1, 1], [1, 1, 1, 1]], groups, ("AD", "HP"),
                                 n_boot=500)
    # two seeds: balanced accuracy 1 and 1/2, point estimate their mean
    assert single["balanced_accuracy"]["estimate"] == pytest.approx(0.75)
    assert single["seeds"] == 2 and single["method"].startswith("cluster bootstrap")


def test_spread_and_paired_differences_are_t_intervals_worked_by_hand():
    """Values 0.5, 0.7, 0.9: mean 0.7, SD 0.2, half-width t(0.975, 2) · 0.2/sqrt(3) = 4.302653
    · 0.115470 = 0.496827; the upper end 1.1968 is clipped to 1. Paired 0.6 - 0.5 and 0.8 - 0.5:
    mean 0.2, SD 0.141421, half-width 12.706205 · 0.1 = 1.270620, clipped to [-1, 1]."""
    s = spread([0.5, 0.7, 0.9], bounds=(0.0, 1.0))
    assert s["mean"] == pytest.approx(0.7) and s["std"] == pytest.approx(0.2)
    assert s["ci"] == pytest.approx([0.7 - 0.496827, 1.0], abs=1e-6) and s["n"] == 3
    free = spread([0.5, 0.7, 0.9])
    assert free["ci"] == pytest.approx([0.203173, 1.196827], abs=1e-6)
    assert spread([0.4]) == {"mean": 0.4, "std": 0.0, "ci": [0.4, 0.4], "n": 1, "values": [0.4]}
    assert free["values"] == [0.5, 0.7, 0.9]
    with pytest.raises(ValueError, match="^no values$"):
        spread([])
    # a 90% interval: t(0.95, 2) = 2.919986; half-width 2.919986 · 0.2/sqrt(3) = 0.337171
    assert spread([0.5, 0.7, 0.9], 0.90)["ci"] == pytest.approx([0.362829, 1.037171], abs=1e-6)
    ninety = paired_difference([0.6, 0.8, 1.0], [0.5, 0.5, 0.5], confidence=0.90)
    assert ninety["ci"] == pytest.approx([0.3 - 0.337171, 0.3 + 0.337171], abs=1e-6)
    d = paired_difference([0.6, 0.8], [0.5, 0.5])
    assert d["mean"] == pytest.approx(0.2) and d["std"] == pytest.approx(0.141421, abs=1e-6)
    assert d["ci"] == [-1.0, 1.0]
    narrow = paired_difference([0.6, 0.8, 0.7], [0.5, 0.7, 0.6])  # +0.1 on every seed
    assert narrow["mean"] == pytest.approx(0.1) and narrow["ci"] == pytest.approx([0.1, 0.1])
    with pytest.raises(ValueError, match="one per seed in both arms; got 2 and 1"):
        paired_difference([0.6, 0.8], [0.5])


def _seed_row(macro: float, recall_ad: float, f1_ad: float) -> dict:
    per_class = {"AD": {"precision": 0.5, "recall": recall_ad, "f1": f1_ad},
                 "HP": {"precision": 0.5, "recall": 0.5, "f1": 0.5}}
    return {"macro_f1": macro, "balanced_accuracy": 0.5, "accuracy": 0.5, "per_class": per_class,
            "confusion": [[1, 0], [0, 1]], "classes": ["AD", "HP"]}


def test_arm_summary_and_comparison_with_their_warnings():
    """Two seeds per arm. AD recall 0.8, 0.8 -> 0.5, 0.6: fell by 0.25 with an interval
    0.25 ± 12.706 · 0.0707/sqrt(2) = ± 0.635 (crosses 0: not beyond noise); AD F1 0.6 -> 0.7 rose: no warning.
    The summed confusion adds the seeds' matrices."""
    control = [_seed_row(0.6, 0.8, 0.6), _seed_row(0.7, 0.8, 0.6)]
    treated = [_seed_row(0.65, 0.5, 0.7), _seed_row(0.75, 0.6, 0.7)]
    summary = summarise_arm(control)
    assert summary["macro_f1"]["mean"] == pytest.approx(0.65)
    # proportions stay in [0, 1]: macro-F1 0.6, 0.7 has a t interval of 0.65 ± 0.635, clipped
    assert summary["macro_f1"]["ci"] == pytest.approx([0.015, 1.0], abs=1e-3)
    assert summary["per_class"]["HP"]["f1"]["ci"] == [0.5, 0.5]
    high = summarise_arm([_seed_row(0.9, 0.9, 0.95), _seed_row(1.0, 1.0, 1.0)])
    assert high["macro_f1"]["ci"][1] == 1.0 and high["per_class"]["AD"]["recall"]["ci"][1] == 1.0
    low = summarise_arm([_seed_row(0.0, 0.0, 0.0), _seed_row(0.1, 0.1, 0.1)])
    assert low["macro_f1"]["ci"][0] == 0.0 and low["per_class"]["AD"]["f1"]["ci"][0] == 0.0
    lone = summarise_arm(control[:1])  # one seed: the interval is the value
    assert lone["macro_f1"]["ci"] == [0.6, 0.6] and lone["classes"] == ["AD", "HP"]
    assert summary["per_class"]["AD"]["recall"]["mean"] == pytest.approx(0.8)
    assert summary["confusion_sum"] == [[2, 0], [0, 2]] and summary["classes"] == ["AD", "HP"]
    deltas, warned = compare_arms(treated, control)
    assert deltas["macro_f1"]["mean"] == pytest.approx(0.05)
    assert deltas["per_class"]["AD"]["recall"]["mean"] == pytest.approx(-0.25)
    (warning,) = warned
    assert (warning["class"], warning["metric"]) == ("AD", "recall")
    assert warning["control"] == pytest.approx(0.8) and warning["treated"] == pytest.approx(0.55)
    assert warning["delta"] == pytest.approx(-0.25) and warning["beyond_noise"] is False
    assert warning["text"] == ("AD recall fell from 0.800 to 0.550 (-0.250, 95% CI -0.885 to "
                               "+0.385)")
    # the same fall on every seed: an interval of zero width below 0, beyond noise
    steady = [_seed_row(0.65, 0.55, 0.7), _seed_row(0.75, 0.55, 0.7)]
    (beyond,) = compare_arms(steady, control)[1]
    assert beyond["beyond_noise"] is True and beyond["ci"] == pytest.approx([-0.25, -0.25])
    # one seed cannot show noise: never beyond it
    (lone,) = compare_arms(steady[:1], control[:1])[1]
    assert lone["beyond_noise"] is False


def test_regression_warnings_need_an_interval_wholly_below_zero():
    """AD recall [-0.3, -0.05] warns; AD F1 [-0.25, +0.02] and SSA's do not; a high end of
    exactly 0 does not (the interval does not exclude 0)."""
    delta = {"groups": 30, "seeds": 3, "per_class": {
        "AD": {"recall": {"estimate": -0.2, "low": -0.3, "high": -0.05, "p": 0.01},
               "f1": {"estimate": -0.1, "low": -0.25, "high": 0.02}},
        "SSA": {"recall": {"estimate": -0.1, "low": -0.2, "high": 0.0},
                "f1": {"estimate": 0.0, "low": -0.1, "high": 0.1}}}}
    (warning,) = u.regression_warnings(delta, ("AD", "SSA"))
    assert warning == {"class": "AD", "metric": "recall", "delta": -0.2, "ci": [-0.3, -0.05],
                       "beyond_noise": True, "p": 0.01,
                       "text": "AD recall fell by 0.200 (95% CI -0.300 to -0.050, excluding 0; "
                               "cluster bootstrap over 30 test groups and 3 seeds)"}


# --- the leak audit's measures -------------------------------------------------------------

def test_leak_measures_worked_by_hand():
    """AUC of scores [0.1, 0.5, 0.5, 0.9] for truth [0, 0, 1, 1]: of the four positive-negative
    pairs three are won and one tied: (3 + 0.5)/4 = 0.875. The Laplacian of a flat image is 0;
    a single bright pixel of 10 in a 5 x 5 grey image: |4·10| at it and |-10| at its four
    neighbours inside the 3 x 3 interior: (40 + 4·10)/9. A 4 x 4 square in an 8 x 8 mask: area
    16/64, boundary 12 pixels (the ring) per 8 rows, smoothness 4·pi·16/144."""
    from polyp_core.review import leaks

    y = np.array([False, False, True, True])
    assert leaks.auc(y, np.array([0.1, 0.5, 0.5, 0.9])) == pytest.approx(0.875)
    assert leaks.auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert leaks.high_frequency(np.full((5, 5, 3), 7, np.uint8)) == 0.0
    spot = np.zeros((5, 5, 3), np.uint8)
    spot[2, 2] = 10
    assert leaks.high_frequency(spot) == pytest.approx(80 / 9)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    shape = leaks.mask_shape(mask)
    assert shape["mask_area"] == 0.25 and shape["mask_boundary"] == 1.5
    assert shape["mask_smoothness"] == pytest.approx(4 * np.pi * 16 / 144)
    assert leaks.mask_shape(np.zeros((4, 4), bool))["mask_smoothness"] == 0.0
    # a constant score says nothing in any resample: its interval is the value itself
    assert leaks.cluster_bootstrap_auc(y, np.full(4, 0.3), np.arange(4), n_boot=50) == \
        (0.5, 0.5, 0.5)
    value, low, high = leaks.cluster_bootstrap_auc(y, np.array([0.1, 0.2, 0.8, 0.9]),
                                                   np.arange(4), n_boot=200)
    assert (value, low, high) == (1.0, 1.0, 1.0)  # perfect in every resample with both kinds


def test_metrics_at_the_edges_of_each_rule():
    """Confusion [[1, 0, 0], [1, 1, 0], [0, 0, 0]]: class 1 predicted once and right
    (precision 1), class 0 true once (recall 1) and counted in the macro means, class 2 never
    predicted (precision 0, not NaN). Confusion [[1, 1], [1, 1]]: precision and recall 1/2,
    F1 1/2 (their sum is exactly 1). No 0/0 warning escapes."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = u._metrics_from_confusion(np.array([[1.0, 0, 0], [1, 1, 0], [0, 0, 0]]))
        half = u._metrics_from_confusion(np.array([[1.0, 1], [1, 1]]))
        empty = u._metrics_from_confusion(np.zeros((2, 2)))
    assert m["precision"].tolist() == [0.5, 1.0, 0.0] and m["recall"].tolist() == [1.0, 0.5, 0.0]
    assert m["f1"] == pytest.approx([2 / 3, 2 / 3, 0.0])
    assert m["balanced_accuracy"] == pytest.approx(0.75) and m["macro_f1"] == pytest.approx(2 / 3)
    assert half["f1"].tolist() == [0.5, 0.5]
    assert np.isnan(empty["macro_f1"])
    # the highest cell (true 1, predicted 1) never occurs: the matrix keeps its size
    out = u._confusions(np.array([0, 1]), np.array([[0, 0]]), np.ones((1, 2)), 2)
    assert out[0, 0].tolist() == [[1, 0], [1, 0]]
    one = u._interval(0.4, np.array([0.3]), 0.95)  # a single finite replicate is its interval
    assert (one["low"], one["high"]) == pytest.approx((0.3, 0.3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        means = u._score_means(np.array([[1.0, np.nan]]), np.array([[0.0, 2.0]]))
    assert np.isnan(means[0, 0])  # the only drawn image has no score: no mean, no warning


def test_p_values_at_their_edges():
    """Two lesions. Treated worse on lesion A (0 against 1) and equal on B: replicate
    differences -1, -1/2 (p 3/4 between them) or exactly 0 (B drawn twice, 1/4): p = 2 · min(1,
    1/4) = 1/2, the ties at 0 counted on both sides. Treated equal to control everywhere: every
    replicate is 0 and p is 1 (2 · 1, capped). All scores missing: no replicate, p NaN."""
    groups = ["A", "A", "B", "B"]
    control = np.array([[1.0, 1.0, 0.5, 0.5]])
    worse = np.array([[0.0, 0.0, 0.5, 0.5]])
    d = u.paired_cluster_bootstrap_scores(worse, control, groups, n_boot=2000, seed=0)
    assert d["estimate"] == pytest.approx(-0.5) and d["p"] == pytest.approx(0.5, abs=0.05)
    assert u.paired_cluster_bootstrap_scores(control, control, groups)["p"] == 1.0
    missing = np.full((1, 4), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the point estimate of nothing
        gone = u.paired_cluster_bootstrap_scores(missing, missing, groups, n_boot=20)
    assert np.isnan(gone["p"]) and np.isnan(gone["low"])
    # classification: treated worse on lesion A's two AD frames, equal on B's two HP frames
    y = [0, 0, 1, 1]
    paired = u.paired_cluster_bootstrap(y, [[1, 1, 1, 1]], [[0, 0, 1, 1]], groups, ("AD", "HP"),
                                        n_boot=2000, seed=0)
    assert paired["balanced_accuracy"]["p"] == pytest.approx(0.5, abs=0.05)
    assert paired["per_class"]["AD"]["recall"]["p"] == pytest.approx(0.5, abs=0.05)
    same = u.paired_cluster_bootstrap(y, [[0, 0, 1, 1]], [[0, 0, 1, 1]], groups, ("AD", "HP"),
                                      n_boot=200)
    assert same["macro_f1"]["p"] == 1.0 and same["per_class"]["HP"]["f1"]["p"] == 1.0
    lone = u.paired_cluster_bootstrap(y, [[0, 0, 1, 1]], [[0, 0, 1, 1]], groups, ("AD", "HP"),
                                      n_boot=1)  # one replicate still gives a p
    assert lone["macro_f1"]["p"] == 1.0


def test_bootstrap_outputs_name_their_method_and_their_documented_defaults():
    """What a stored run records beside each interval, and the defaults the README states
    (2,000 replicates, seed 0), pinned on a seeded case whose interval moves with either."""
    import inspect

    y = [0, 0, 1, 1, 0, 1]
    groups = ["a", "a", "b", "c", "d", "e"]
    one = u.cluster_bootstrap(y, [[0, 1, 1, 1, 0, 0]], groups, ("AD", "HP"))
    assert (one["groups"], one["seeds"], one["n_boot"]) == (5, 1, 2000)
    assert one["method"] == "cluster bootstrap over test groups, with seeds"
    paired = u.paired_cluster_bootstrap(y, [[0, 1, 1, 1, 0, 0]], [[0, 0, 1, 0, 0, 0]], groups,
                                        ("AD", "HP"))
    assert paired["method"] == "paired cluster bootstrap over test groups, with seeds"
    assert (paired["groups"], paired["seeds"], paired["n_boot"]) == (5, 1, 2000)
    scores = [[0.9, 0.8, 0.4, 0.7, 0.2, 0.6]]
    s = u.cluster_bootstrap_scores(scores, groups)
    assert (s["groups"], s["seeds"], s["n_boot"]) == (5, 1, 2000)
    assert u.paired_cluster_bootstrap_scores(scores, scores, groups)["n_boot"] == 2000
    for fn in (u.cluster_bootstrap, u.paired_cluster_bootstrap, u.cluster_bootstrap_scores,
               u.paired_cluster_bootstrap_scores):
        params = inspect.signature(fn).parameters
        assert (params["n_boot"].default, params["seed"].default) == (2000, 0), fn.__name__
    # the default seed is 0: the same interval as asking for seed 0
    assert one == u.cluster_bootstrap(y, [[0, 1, 1, 1, 0, 0]], groups, ("AD", "HP"), seed=0)
    assert paired == u.paired_cluster_bootstrap(y, [[0, 1, 1, 1, 0, 0]], [[0, 0, 1, 0, 0, 0]],
                                                groups, ("AD", "HP"), seed=0)
    assert u.paired_cluster_bootstrap_scores(scores, [[0.5] * 6], groups) == \
        u.paired_cluster_bootstrap_scores(scores, [[0.5] * 6], groups, seed=0)
    assert s == u.cluster_bootstrap_scores(scores, groups, seed=0)
    # seeded: the same call gives the same interval, another seed another one
    assert u.cluster_bootstrap(y, [[0, 1, 1, 1, 0, 0]], groups, ("AD", "HP")) == one
    assert u.paired_cluster_bootstrap(y, [[0, 1, 1, 1, 0, 0]], [[0, 0, 1, 0, 0, 0]], groups,
                                      ("AD", "HP"))["macro_f1"] == paired["macro_f1"]
    assert u.cluster_bootstrap_scores(scores, groups) == s
    assert u.cluster_bootstrap_scores(scores, groups, seed=1)["low"] != s["low"]


def test_a_leak_report_prints_and_stores_what_it_found():
    """A report of two channels, written out as the CLI prints it and stored and read back."""
    import io

    from PIL import Image

    from polyp_core.review.leaks import ChannelResult, LeakReport, jpeg75_bytes, served_url

    ok = ChannelResult("byte_length", 0.5, 0.4, 0.6, True, False)
    leak = ChannelResult("combined", 0.71, 0.52, 0.9, True, True, 0.005)
    shown = ChannelResult("serve_ms", 0.8, 0.7, 0.9, False, False)
    report = LeakReport("s1", 3, 4, 14, (ok, leak, shown), 100, False, {"size": 96}, "a note")
    assert report.lines() == [
        "leak audit of s1: FAILED · 3 real and 4 synthetic images, 14 assignments; 95% intervals "
        "from 100 cluster bootstrap resamples over images; AUC 0.5 = no separation",
        "a note",
        "byte_length     AUC 0.500 [0.400, 0.600]  ok       served file's byte length "
        "(= Content-Length)",
        "combined        AUC 0.710 [0.520, 0.900] permutation p 0.005  LEAK     all gated "
        "channels together (logistic regression, out of fold)",
        "serve_ms        AUC 0.800 [0.700, 0.900]  reported time to hand the bytes over, median "
        "of 5 reads, whole ms (reported: depends on the machine's load)"]
    passed = LeakReport("s2", 1, 1, 2, (ok,), 10, True)
    assert passed.lines()[0].startswith("leak audit of s2: PASSED · 1 real and 1 synthetic")
    assert len(passed.lines()) == 2  # no note line
    stored = report.to_json()
    assert stored == {"study": "s1", "n_real": 3, "n_synthetic": 4, "n_assignments": 14,
                      "n_boot": 100, "passed": False, "chain": {"size": 96}, "note": "a note",
                      "channels": [c.__dict__ for c in (ok, leak, shown)]}
    assert LeakReport.from_json(stored) == report
    old = {k: v for k, v in stored.items() if k not in ("chain", "note")}  # stored before both
    assert LeakReport.from_json(old) == LeakReport("s1", 3, 4, 14, (ok, leak, shown), 100, False)
    # the URL a browser gets: the content hash and a fixed name; the re-encoded size is JPEG 75
    assert served_url(b"abc") == ("/gradio_api/file=<cache>/ba7816bf8f01cfea414140de5dae2223b0036"
                                  "1a396177a9cb410ff61f20015ad/image.jpg")
    rgb = np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=75)
    assert jpeg75_bytes(rgb) == len(buffer.getvalue())
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=76)
    assert jpeg75_bytes(rgb) != len(buffer.getvalue())


def _audit_row(image: str, real: bool, k: int, **overrides) -> dict:
    """One read of an image: every channel constant but what ``overrides`` sets."""
    from polyp_core.review.leaks import CHANNELS

    return {"image": image, "real": real, **{c: 1.0 for c in CHANNELS}, **overrides}


def test_the_audit_of_measured_rows_worked_by_hand():
    """Ten real and ten synthetic images, one read each. The served byte length separates them
    completely (real 100-109, synthetic 200-209): AUC 0 (real is lower) with the interval [0,
    0] in every resample, so that gated channel leaks; the serving time separates them too but
    is only reported (never gated); the constant channels read 0.5 [0.5, 0.5]. The combined
    model learns the byte length out of fold (AUC 1, interval [1, 1]), so its permutation p is
    computed: (1 + hits)/(1 + 199), here (measured, seed 0) one relabelling of 199 also reached
    AUC 1 out of fold: p = 2/200 = 0.01, not below 0.01, so the combined channel alone would
    not hold the study (the byte length does).
    A mask study's shape channels join as reported channels. One kind of image only: nothing
    to tell apart, the study passes with a note."""
    from polyp_core.review.leaks import CHANNELS, MASK, audit_rows

    rows = [_audit_row(f"r{k}", True, k, byte_length=100 + k, serve_ms=1 + k) for k in range(10)]
    rows += [_audit_row(f"s{k}", False, k, byte_length=200 + k, serve_ms=50 + k)
             for k in range(10)]
    report = audit_rows("st", rows, n_boot=200)
    got = {c.name: c for c in report.channels}
    assert list(got) == [*CHANNELS, "combined"]
    assert (got["byte_length"].auc, got["byte_length"].low, got["byte_length"].high) == (0, 0, 0)
    assert got["byte_length"].leaks and got["byte_length"].gated
    assert (got["serve_ms"].auc, got["serve_ms"].leaks, got["serve_ms"].gated) == (0, False, False)
    assert all((got[c].auc, got[c].low, got[c].high, got[c].leaks) == (0.5, 0.5, 0.5, False)
               for c in ("url_length", "token_length", "position", "jpeg75_bytes"))
    combined = got["combined"]
    assert (combined.auc, combined.low, combined.high, combined.p) == (1.0, 1.0, 1.0, 0.01)
    assert not combined.leaks and combined.gated
    assert (report.n_real, report.n_synthetic, report.n_assignments, report.n_boot) == \
        (10, 10, 20, 200)
    assert report.passed is False and report.note == ""
    masked = audit_rows("st", [{**r, **{m: 0.5 for m in MASK}} for r in rows], n_boot=20)
    assert [c.name for c in masked.channels] == [*CHANNELS, *MASK, "combined"]
    assert not any(c.gated for c in masked.channels if c.name in MASK)
    alike = audit_rows("st", [r for r in rows if r["real"]], n_boot=20, chain={"k": 1})
    assert (alike.n_real, alike.n_synthetic, alike.n_assignments, alike.channels) == (10, 0, 10, ())
    assert alike.passed and alike.chain == {"k": 1}
    assert alike.note == ("only one kind of image (all real or all synthetic): nothing to tell "
                          "apart")


def test_the_combined_channel_and_its_permutation_p_at_their_edges():
    """Nothing varies: every score 0.5, and the combined channel's interval [0.5, 0.5] does not
    clear 0.5, so no permutation p is computed. One real image: fewer than two folds, every score 0.5.
    The permutation p is (1 + hits)/(1 + permutations): an AUC no relabelling reaches (2.0)
    gives 1/4 with three permutations, one every relabelling reaches (-1) gives 4/4."""
    from polyp_core.review.leaks import GATED, combined_permutation_p, combined_scores

    flat = [_audit_row(f"i{k}", k % 2 == 0, k) for k in range(8)]
    assert combined_scores(flat, GATED).tolist() == [0.5] * 8
    from polyp_core.review.leaks import audit_rows

    combined = audit_rows("st", flat, n_boot=20).channels[-1]  # AUC 0.5 [0.5, 0.5]: no p
    assert (combined.auc, combined.low, combined.high, combined.p, combined.leaks) == \
        (0.5, 0.5, 0.5, None, False)
    lonely = [_audit_row("r0", True, 0, byte_length=1.0)] + \
        [_audit_row(f"s{k}", False, k, byte_length=float(k + 2)) for k in range(5)]
    assert combined_scores(lonely, GATED).tolist() == [0.5] * 6
    rows = [_audit_row(f"r{k}", True, k, byte_length=float(k)) for k in range(4)] + \
        [_audit_row(f"s{k}", False, k, byte_length=float(10 + k)) for k in range(4)]
    assert combined_permutation_p(rows, 2.0, permutations=3) == 0.25
    assert combined_permutation_p(rows, -1.0, permutations=3) == 1.0


def test_an_audit_is_repeatable_and_its_interval_is_the_percentile_pair_of_resampled_aucs():
    """On overlapping scores: two audits of the same rows agree to the last digit (every draw
    is seeded, default seed 0); the interval is the 2.5th and 97.5th percentile of the AUCs of
    resamples that draw whole images with the seeded generator, skipping resamples of one kind
    (recomputed here with scikit-learn's AUC); the permutation p is seeded the same way."""
    from sklearn.metrics import roc_auc_score

    from polyp_core.review.leaks import audit_rows, cluster_bootstrap_auc, combined_permutation_p

    rng = np.random.default_rng(7)
    rows = [_audit_row(f"i{k // 2}", k // 2 < 6, k, byte_length=float(rng.normal(k // 2 < 6)),
                       url_length=float(rng.normal())) for k in range(24)]  # 12 images, 2 reads
    assert audit_rows("st", rows, n_boot=100) == audit_rows("st", rows, n_boot=100)
    y = np.array([r["real"] for r in rows])
    score = np.array([r["byte_length"] for r in rows])
    clusters = np.array([r["image"] for r in rows])
    value, low, high = cluster_bootstrap_auc(y, score, clusters, 300)
    assert (value, low, high) == cluster_bootstrap_auc(y, score, clusters, 300, seed=0)
    ids, inverse = np.unique(clusters, return_inverse=True)
    draws = np.random.default_rng(0)
    aucs = []
    for _ in range(300):
        picked = np.concatenate([np.flatnonzero(inverse == k)
                                 for k in draws.integers(0, len(ids), len(ids))])
        if 0 < y[picked].sum() < len(picked):
            aucs.append(roc_auc_score(y[picked], score[picked]))
    assert value == pytest.approx(roc_auc_score(y, score))
    assert (low, high) == pytest.approx(tuple(np.percentile(aucs, [2.5, 97.5])))
    p = combined_permutation_p(rows, 0.6, permutations=9)
    assert p == combined_permutation_p(rows, 0.6, seed=0, permutations=9)
    assert (p * 10).is_integer() and 0.1 <= p <= 1.0


def _noisy_rows(n_real: int = 6, n_synthetic: int = 6, reads: int = 2, seed: int = 7) -> list:
    """Overlapping byte lengths (real shifted up by one SD) and url lengths at another scale."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_real + n_synthetic):
        real = k < n_real
        for _ in range(reads):
            rows.append(_audit_row(f"i{k}", real, k, byte_length=float(rng.normal(real)),
                                   url_length=float(rng.normal(100, 30))))
    return rows


def test_the_audits_report_names_its_study_and_chain_and_the_seed_reaches_every_draw():
    """The report carries the study, the chain it was given ({} when none) and the replicate
    count. Another seed gives other resamples, folds and relabellings (the seed reaches each
    draw), and on overlapping scores every gated interval has a width (whole images are
    resampled, not the single cluster of everything)."""
    from polyp_core.review.leaks import audit_rows, combined_permutation_p

    rows = _noisy_rows()
    first = audit_rows("st", rows, n_boot=60, chain={"c": 2})
    assert (first.study, first.chain, first.n_boot) == ("st", {"c": 2}, 60)
    bare = audit_rows("st", rows, n_boot=60)
    assert bare.chain == {} and bare.study == "st"
    other = audit_rows("st", rows, n_boot=60, seed=1)
    got = {c.name: c for c in bare.channels}
    moved = {c.name: c for c in other.channels}
    for name in ("byte_length", "url_length", "combined"):
        assert got[name].low < got[name].high  # an interval, not a point
        assert (got[name].low, got[name].high) != (moved[name].low, moved[name].high)
    assert got["combined"].auc != moved["combined"].auc  # other folds, other out-of-fold scores
    alike = audit_rows("st", [r for r in rows if r["real"]], n_boot=20)
    assert alike.n_boot == 20 and alike.study == "st" and alike.chain == {}
    ps = {seed: combined_permutation_p(rows, 0.55, seed=seed, permutations=19)
          for seed in (0, 1, 2)}
    assert len(set(ps.values())) > 1, ps  # the relabellings follow the seed


def test_the_bootstrap_auc_skips_one_kind_resamples_and_keeps_the_point_when_none_is_left():
    """Two real and two synthetic images: an eighth of the resamples hold one kind only and
    are skipped (not the end of the loop), as recomputed here. With one replicate that holds
    one kind, no resample is left and the interval is the point. Scores of range exactly 1
    (0 and 1) are bootstrapped like any others."""
    from sklearn.metrics import roc_auc_score

    from polyp_core.review.leaks import cluster_bootstrap_auc

    y = np.array([True, True, False, False])
    score = np.array([0.9, 0.2, 0.4, 0.1])
    clusters = np.array(["a", "b", "c", "d"])
    value, low, high = cluster_bootstrap_auc(y, score, clusters, 400, seed=3)
    draws, aucs = np.random.default_rng(3), []
    for _ in range(400):
        picked = draws.integers(0, 4, 4)
        if 0 < y[picked].sum() < 4:
            aucs.append(roc_auc_score(y[picked], score[picked]))
    assert value == 0.75 and (low, high) == pytest.approx(tuple(np.percentile(aucs, [2.5, 97.5])))
    seed = next(s for s in range(100)
                if len(set(y[np.random.default_rng(s).integers(0, 4, 4)])) == 1)
    assert cluster_bootstrap_auc(y, score, clusters, 1, seed=seed) == (0.75, 0.75, 0.75)
    binary = np.array([1.0, 0.0, 1.0, 0.0])
    value, low, high = cluster_bootstrap_auc(y, binary, clusters, 400, seed=3)
    assert value == 0.5 and low < value < high


def test_the_combined_model_is_the_documented_out_of_fold_pipeline():
    """Recomputed with scikit-learn: folds = min(5, real images, synthetic images), grouped by
    image and stratified, shuffled by the seed; a standardised logistic regression per fold,
    its probability of "real" for the fold's test rows. Channels that are each constant (at
    different values) teach nothing: every score 0.5, whatever the class balance; one real
    image: no two folds, every score 0.5; two: two folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from polyp_core.review.leaks import GATED, combined_scores

    for n_real, n_synthetic in ((8, 8), (3, 9), (9, 3), (2, 5)):
        rows = _noisy_rows(n_real, n_synthetic, reads=1, seed=n_real)
        x = np.array([[r[n] for n in GATED] for r in rows])
        y = np.array([r["real"] for r in rows])
        groups = np.array([r["image"] for r in rows])
        expected = np.full(len(rows), 0.5)
        folds = min(5, n_real, n_synthetic)
        for train, test in StratifiedGroupKFold(folds, shuffle=True, random_state=4).split(
                x, y, groups):
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
            expected[test] = model.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        assert combined_scores(rows, GATED, seed=4) == pytest.approx(expected, abs=1e-12)
        assert combined_scores(rows, GATED).tolist() == combined_scores(rows, GATED, 0).tolist()
    levels = {name: float(k + 2) for k, name in enumerate(GATED)}
    lopsided = [_audit_row(f"i{k}", k < 3, k, **levels) for k in range(9)]
    assert combined_scores(lopsided, GATED).tolist() == [0.5] * 9


def test_the_audits_seed_and_replicate_count_reach_every_draw(monkeypatch):
    """Every bootstrap, every out-of-fold model and the relabellings get the audit's seed and
    replicate count, and the bootstrap resamples the audit's images (recorded by wrapping them).
    Catches a call that falls back to a default."""
    from polyp_core.review import leaks

    calls: dict[str, list] = {"bootstrap": [], "combined": [], "permutation": []}
    bootstrap, combined, permutation = (leaks.cluster_bootstrap_auc, leaks.combined_scores,
                                        leaks.combined_permutation_p)

    def spy_bootstrap(y, score, clusters, n_boot, seed=None):
        calls["bootstrap"].append((tuple(clusters), n_boot, seed))
        return bootstrap(y, score, clusters, n_boot, seed)

    def spy_combined(rows, names, seed=None):
        calls["combined"].append(seed)
        return combined(rows, names, seed)

    def spy_permutation(rows, observed, seed=None, permutations=3):
        calls["permutation"].append(seed)
        return permutation(rows, observed, seed, permutations=3)

    monkeypatch.setattr(leaks, "cluster_bootstrap_auc", spy_bootstrap)
    monkeypatch.setattr(leaks, "combined_scores", spy_combined)
    monkeypatch.setattr(leaks, "combined_permutation_p", spy_permutation)
    rows = [_audit_row(f"r{k}", True, k, byte_length=100.0 + k) for k in range(6)]
    rows += [_audit_row(f"s{k}", False, k, byte_length=200.0 + k) for k in range(6)]
    leaks.audit_rows("st", rows, n_boot=30, seed=5)
    images = tuple(r["image"] for r in rows)
    assert calls["bootstrap"] and set(calls["bootstrap"]) == {(images, 30, 5)}
    assert len(calls["combined"]) == 1 + 3 and set(calls["combined"]) == {5}
    assert calls["permutation"] == [5]
