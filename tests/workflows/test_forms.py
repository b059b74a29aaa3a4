"""Each user action declared once (``polyp_core.forms``): the CLI's options and the tabs'
defaults come from the declaration, whose engine fields come from the engine's request."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from polyp_core.forms import Field, Form, names_text, of
from polyp_core.validation import rule

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class _Request:
    count: int = rule(3, lo=1, hi=9)
    ratio: float | None = rule(None, lo=0.0, hi=1.0)
    mode: str = rule("a", choices=("a", "b"))
    on: bool = True
    seeds: tuple[int, ...] = (0, 1)


def test_a_field_of_a_request_takes_its_default_bounds_and_choices():
    count = of(_Request, "count", help="how many")
    assert (count.default, count.kind, count.lo, count.hi) == (3, "int", 1, 9)
    assert of(_Request, "mode").choices == ("a", "b")
    assert of(_Request, "ratio", kind="float").kind == "float"
    assert of(_Request, "on").kind == "flag"
    assert of(_Request, "seeds", kind="names", show=names_text).default == "0,1"
    assert of(_Request, "count", field="n").name == "n"
    with pytest.raises(KeyError, match="_Request has no field 'counts'"):
        of(_Request, "counts")


def test_a_form_builds_the_clis_options_and_reads_them_back():
    form = Form("try", "a test", (
        of(_Request, "count", help="how many"), of(_Request, "mode"),
        of(_Request, "on", option="--off", help="turn it off"),
        of(_Request, "ratio", kind="float"), Field("name", required=True)))
    parser = argparse.ArgumentParser()
    form.add_options(parser)
    args = parser.parse_args(["--name", "x"])
    assert form.values(args) == {"count": 3, "mode": "a", "on": True, "ratio": None, "name": "x"}
    args = parser.parse_args(["--name", "x", "--count", "5", "--off", "--ratio", "0.5"])
    assert form.values(args) == {"count": 5, "mode": "a", "on": False, "ratio": 0.5, "name": "x"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "x", "--mode", "c"])  # not a choice
    assert "how many (default: 3)" in parser.format_help()
    assert form.options() == {"on": "--off"}
    assert form.defaults() == {"count": 3, "mode": "a", "on": True, "ratio": None, "name": None}
    with pytest.raises(ValueError, match=r"fields declared twice: \['count'\]"):
        Form("twice", "", (of(_Request, "count"), of(_Request, "count")))
    with pytest.raises(ValueError, match="kind 'number' is not one of"):
        Field("x", kind="number")


def test_retrains_defaults_are_the_requests():
    from polyp_core.experiment import ExperimentConfig, SelectionPolicy
    from polyp_core.experiment.folds import INNER_VALID
    from polyp_core.training import TrainConfig
    from polyp_core.workflows.retrain import RETRAIN

    fields = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    defaults = RETRAIN.defaults()
    assert defaults["seeds"] == ",".join(map(str, fields["seeds"].default)) == "0,1,2"
    assert defaults["folds"] == "auto" and fields["folds"].default is None
    assert defaults["inner_valid"] == INNER_VALID
    assert defaults["epochs"] == TrainConfig().epochs
    # the learning rate and batch are each task's (tests/segment/test_full_size.py): blank here
    assert defaults["lr"] is None and defaults["batch_size"] is None
    assert defaults["selection_seed"] == SelectionPolicy().seed
    assert RETRAIN["imbalance"].choices == ("none", "sampler", "loss")


def test_inpaints_defaults_are_the_requests_and_help_shows_them():
    from polyp_core.generation.inpaint import InpaintRequest
    from polyp_core.workflows.generate import INPAINT, inpaint_request

    fields = {f.name: f for f in dataclasses.fields(InpaintRequest)}
    assert INPAINT["dilate"].default == fields["dilate"].default == 20
    assert INPAINT["seeds"].default == "0"
    request = inpaint_request({"generator": "g", "class_label": "AD", "dataset": "d",
                               "image": "i", "seeds": "0-2", "dilate": "", "steps": 7.0})
    assert (request.seeds, request.dilate, request.steps) == ((0, 1, 2), 20, 7)
    from polyp_core.validation import InvalidRequest

    with pytest.raises(InvalidRequest, match="dilatation: is not a field of an inpaint request"):
        inpaint_request({"generator": "g", "dilatation": 3})
    with pytest.raises(InvalidRequest, match="steps"):
        inpaint_request({"generator": "g", "class_label": "AD", "steps": 2.5})
    help_text = subprocess.run([sys.executable, "-m", "polyp_core", "inpaint", "--help"],
                               capture_output=True, text=True, cwd=ROOT).stdout
    assert re.search(r"--dilate DILATE\s+hole: the mask grown by N px of the frame\s+\(default:\s+20\)",
                     help_text), help_text


def test_the_dilate_folds_and_seeds_defaults_are_written_once():
    """The numbers live in the engine's requests; the forms, the CLI and the tabs read them."""
    def where(pattern: str) -> list[str]:
        found = subprocess.run(["grep", "-rnE", "--include=*.py", pattern, "polyp_core",
                                "studio_ui", "app.py"],
                               cwd=ROOT, capture_output=True, text=True).stdout
        return sorted(line.split(":")[0] for line in found.splitlines())

    assert where(r"HOLE_DILATE = 20|dilate: int = rule\(20|dilate.*\b20\b") == [
        "polyp_core/generation/masks.py"]
    assert where(r"seeds: tuple\[int, \.\.\.\] = \(0, 1, 2\)|\"0,1,2\"|seeds=\(0, 1, 2\)") == [
        "polyp_core/experiment/config.py"]
    assert where(r"\"folds\": (AUTO|\"auto\")|folds: int \| None = rule\(None") == [
        "polyp_core/experiment/config.py"]


def test_a_form_event_hands_the_widgets_values_by_field_name():
    import inspect

    from studio_ui.services import form_event

    seen = []
    handler = form_event(["a", "b"], lambda person, fields: seen.append((person, fields)))
    assert list(inspect.signature(handler).parameters) == ["person", "a", "b"]
    handler("admin", "", 3)
    assert seen == [("admin", {"a": None, "b": 3})]  # an empty box: the request's default
    with pytest.raises(ValueError):
        handler("admin", 1)  # a widget missing: refused, not shifted
    import numpy as np

    frame = np.zeros((4, 4, 3), np.uint8)  # an uploaded frame reaches the form as pixels
    handler("admin", frame, "")
    assert seen[-1][1]["a"] is frame and seen[-1][1]["b"] is None


def test_the_gates_defaults_are_its_requests_and_its_u_nets():
    from polyp_core.segment.gate import GATE_TRAIN, PAPER_THRESHOLD
    from polyp_core.validation import InvalidRequest
    from polyp_core.workflows.pool import GATE, gate_request

    assert GATE.defaults() == {"dataset": None, "generator": None, "threshold": PAPER_THRESHOLD,
                               "image_size": GATE_TRAIN.image_size, "epochs": GATE_TRAIN.epochs,
                               "seed": 0}
    assert GATE.options() == {"image_size": "--size"}
    config = gate_request({"dataset": " demo ", "generator": "", "epochs": 2.0})
    assert (config.dataset, config.generator, config.train.epochs, config.train.lr) == \
        ("demo", None, 2, GATE_TRAIN.lr)
    with pytest.raises(InvalidRequest, match="threshold"):
        gate_request({"dataset": "demo", "threshold": 1.5})


def test_a_form_names_every_bad_field_at_once():
    """Unknown fields and values that are not numbers, all in one refusal, each as its CLI
    option; a number out of range is left to the request, which names all of its own."""
    from polyp_core.validation import InvalidRequest
    from polyp_core.workflows.train_generator import TRAIN_DDPM, train_ddpm_request

    with pytest.raises(InvalidRequest) as caught:
        TRAIN_DDPM.parse({"steps": "many", "batch_size": 2.5, "stepz": 1})
    assert [p.where for p in caught.value.problems] == ["stepz", "steps", "batch_size"]
    assert caught.value.as_flag("model_id") == "--model"
    parsed = TRAIN_DDPM.parse({"steps": 7.0, "lr": "0.1", "splits": " train,valid ",
                               "resume": 0})
    assert (parsed["steps"], parsed["lr"], parsed["splits"], parsed["resume"]) == \
        (7, 0.1, "train,valid", False)
    with pytest.raises(InvalidRequest) as caught:
        train_ddpm_request({"dataset": "d", "model_id": "m", "checkpoint_every": 0,
                            "lr": float("nan")})
    assert {p.where for p in caught.value.problems} == {"checkpoint_every", "lr"}
