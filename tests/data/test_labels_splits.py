from collections import Counter

import pytest

from polyp_core.data.labels import canonical_label, get_scheme, native_scheme
from polyp_core.data.splits import grouped_split, stratified_split


@pytest.mark.parametrize("raw, canon", [("AD", "AD"), ("ass", "SSA"), (" SSA ", "SSA"),
                                        ("HP", "HP"), ("REST", "REST"), ("cat", None)])
def test_canonical_labels(raw, canon):
    assert canonical_label(raw) == canon


def test_schemes():
    assert get_scheme("ad_vs_rest").map("SSA") == "REST"
    assert get_scheme("three_class").index("HP") == 2
    with pytest.raises(ValueError, match="cannot be expressed"):
        get_scheme("three_class").map("REST")
    assert native_scheme({"AD", "SSA", "HP"}) == "three_class"
    assert native_scheme({"AD", "REST"}) == "ad_vs_rest"


def test_stratified_split_keeps_class_proportions_and_small_classes():
    labels = ["AD"] * 540 + ["SSA"] * 120 + ["HP"] * 120 + ["X"] * 3
    splits = stratified_split(labels, seed=0)
    by = Counter(zip(labels, splits))
    assert (by["AD", "train"], by["AD", "valid"], by["AD", "test"]) == (378, 54, 108)
    assert (by["SSA", "train"], by["SSA", "valid"], by["SSA", "test"]) == (84, 12, 24)
    assert (by["X", "train"], by["X", "valid"], by["X", "test"]) == (1, 1, 1)
    with pytest.raises(ValueError, match="fractions"):
        stratified_split(labels, (0.5, 0.5, 0.5))


def test_grouped_split_keeps_groups_whole_and_near_target():
    labels, groups = [], []
    for g in range(200):
        n = 1 + g % 4
        labels += ["AD" if g % 3 else "HP"] * n
        groups += [f"g{g}"] * n
    splits = grouped_split(labels, groups, seed=1)
    seen = {}
    for group, split in zip(groups, splits):
        assert seen.setdefault(group, split) == split
    share = Counter(splits)
    assert abs(share["train"] / len(labels) - 0.7) < 0.03
    assert abs(share["test"] / len(labels) - 0.2) < 0.03
    assert grouped_split(labels, groups, seed=1) == splits
