"""The one validation layer: every request dataclass refuses non-finite numbers, seeds out of
[0, 2**32), non-positive intervals, over-long or unprintable names and unknown choices, and the
message names the field and what it accepts (the CLI writes the field as its option)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from polyp_core.experiment import ExperimentConfig
from polyp_core.experiment.policy import SelectionPolicy
from polyp_core.training import TrainConfig
from polyp_core.data.archive import ArchiveLimits
from polyp_core.data.importer import ImportConfig
from polyp_core.diagnostics.report import DiagnoseConfig
from polyp_core.generation.ddpm import DDPMTrainConfig
from polyp_core.generation.request import LoraChoice, SampleRequest
from polyp_core.generation.sd_lora import LoraTrainConfig
from polyp_core.review.studies import RealPool, StudySpec, SyntheticPool
from polyp_core.validation import InvalidRequest, number, whole

NAN, INF = float("nan"), float("inf")
DDPM = {"dataset": "d", "model_id": "m"}
LORA = {"dataset": "d", "model_id": "m", "base_model": "b"}


@pytest.mark.parametrize("make, message", [
    (lambda: SampleRequest(class_label="AD", guidance=NAN), "guidance: nan is not a finite number"),
    (lambda: SampleRequest(class_label="AD", guidance=INF), "guidance: inf is not a finite number"),
    (lambda: SampleRequest(class_label="AD", seed=2**70), "seed: .* a seed is 0 to 4294967295"),
    (lambda: SampleRequest(class_label="AD", seed=-1), "seed: -1 is out of range"),
    (lambda: SampleRequest(class_label="AD", steps=0), "steps: 0 is out of range; allowed: 1 to 1000"),
    (lambda: SampleRequest(class_label="AD", steps=2.5), "steps: 2.5 is not a whole number"),
    (lambda: SampleRequest(class_label="AD", n=True), "n: True is not a number"),
    (lambda: SampleRequest(class_label="x" * 10**6), r"class_label: 1000000 characters; at most 200"),
    (lambda: SampleRequest(prompt="a\x00polyp"), "prompt: .* not printable"),
    (lambda: SampleRequest(class_label="AD", scheduler="plms"), "scheduler: 'plms' is not one of: ddpm"),
    (lambda: SampleRequest(class_label="AD", loras=(LoraChoice("a", NAN),)),
     "scale: nan is not a finite number"),
    (lambda: DDPMTrainConfig(**DDPM, checkpoint_every=0), "checkpoint_every: 0 is out of range"),
    (lambda: DDPMTrainConfig(**DDPM, lr=0.0), "lr: 0.0 is out of range; allowed: more than 0"),
    (lambda: DDPMTrainConfig(**DDPM, preset="huge"), "preset: 'huge' is not one of: tiny"),
    (lambda: LoraTrainConfig(**LORA, rank=0), "rank: 0 is out of range"),
    (lambda: TrainConfig(dropout=1.0), "dropout: 1.0 is out of range; allowed: at least 0 "
                                                 "and less than 1"),
    (lambda: ExperimentConfig("d", seeds=(0, 2**32)), r"seeds\[1\]: 4294967296 is out of range"),
    (lambda: ExperimentConfig("d", arms=("placebo",)), r"arms\[0\]: 'placebo' is not one of"),
    (lambda: SelectionPolicy(max_ratio=INF), "max_ratio: inf is not a finite number"),
    (lambda: SelectionPolicy(target_mix={"AD": NAN}), r"target_mix\['AD'\]: nan is not a finite"),
    (lambda: DiagnoseConfig("d", near_copy=1.5), "near_copy: 1.5 is out of range; allowed: 0 to 1"),
    (lambda: DiagnoseConfig("d", projections=("mds",)), r"projections\[0\]: 'mds' is not one of"),
    (lambda: ImportConfig("src", split_fractions=(0.7, NAN, 0.2)), r"split_fractions\[1\]: nan"),
    (lambda: StudySpec("=HYPERLINK(\"x\")" + "y" * 300, (RealPool("d", 4),), ("r",)),
     "name: 315 characters; at most 200"),
    (lambda: StudySpec("s", (SyntheticPool(0),), ("r",)), r"n: 0 is out of range"),
    (lambda: StudySpec("s", (RealPool("d", 4),), ("r",), serve_size=10**6), "serve_size: 1000000"),
    (lambda: ArchiveLimits(max_ratio=0.0), "max_ratio: 0.0 is out of range; allowed: more than 0"),
])
def test_requests_refuse_bad_fields_naming_field_and_range(make, message):
    with pytest.raises(InvalidRequest, match=message):
        make()


def test_every_problem_is_reported_at_once_and_good_requests_pass():
    with pytest.raises(InvalidRequest) as caught:
        SampleRequest(class_label="AD", n=0, steps=0, guidance=NAN)
    assert [p.where for p in caught.value.problems] == ["n", "steps", "guidance"]
    assert caught.value.as_flags().startswith("--n: 0 is out of range")
    SampleRequest(class_label="AD", seed=2**32 - 1, guidance=0.0)  # the edges are allowed
    ExperimentConfig("d", policy=SelectionPolicy(target_mix="balance"))


@pytest.mark.parametrize("value, message", [
    (NAN, "nan is not a finite number"), ("", "a number is needed"), (None, "a number is needed"),
    (2.5, "2.5 is not a whole number"), ("ten", "'ten' is not a number"),
])
def test_form_numbers_name_the_field(value, message):
    with pytest.raises(InvalidRequest, match=f"every: {message}"):
        whole(value, "every")
    assert whole(3.0, "every") == 3 and number("0.5", "scale") == 0.5


def test_the_cli_names_the_option_and_the_range(tmp_path):
    out = subprocess.run([sys.executable, "-m", "polyp_core", "--workspace", str(tmp_path / "w"),
                          "train-ddpm", "--dataset", "d", "--model", "m", "--checkpoint-every", "0",
                          "--lr", "nan", "--seed", str(2**70)], capture_output=True, text=True)
    assert out.returncode == 2
    assert "--checkpoint-every: 0 is out of range; allowed: 1 to 10000000" in out.stderr
    assert "--lr: nan is not a finite number" in out.stderr
    assert "--seed: 1180591620717411303424 is out of range; a seed is 0 to 4294967295" in out.stderr
    assert not (tmp_path / "w" / "models").exists()
