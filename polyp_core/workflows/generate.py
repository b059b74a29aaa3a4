"""Generate: sample a generator by class or prompt, X/Y grids, and putting samples into the
synthetic pool (admins, or the terminal's operator). The page shows what a job has made so far
through a ``holder`` dict the job fills; the terminal samples straight into the pool."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.generation.backends import (describe_model, load_generator, sample_to_pool,
                                            store_generated)
from polyp_core.generation.grid import check_grid, xy_grid
from polyp_core.forms import Form, of
from polyp_core.generation.copy_paste import CopyPasteRequest
from polyp_core.generation.inpaint import (Background, InpaintRequest, frame_background,
                                           inpaint, parse_seeds, plan_masks, store_inpainted,
                                           uploaded_background)
from polyp_core.generation.request import SampleRequest
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.review.accounts import Person
from polyp_core.workflows.base import authorise
from polyp_core.workspace import Workspace
from review_db.database import Database

if TYPE_CHECKING:
    import numpy as np

Work = Callable[[Progress, CancelToken], str]


#: The sample action, declared once: the CLI's options and the Generate tab's sampling panel
#: start from it (bounds and choices are ``SampleRequest``'s; the action samples 4 images at
#: guidance 2 unless told otherwise).
SAMPLE = Form("sample", "sample a generator into the synthetic pool", (
    of(SampleRequest, "class_label", option="--class", help="the class to sample"),
    of(SampleRequest, "prompt", help="a text prompt (Stable Diffusion; overrides the class)"),
    of(SampleRequest, "negative_prompt", help="what the prompt should avoid"),
    of(SampleRequest, "n", default=4, help="images to make"),
    of(SampleRequest, "seed", help="the first image's seed"),
    of(SampleRequest, "steps", help="denoising steps"),
    of(SampleRequest, "guidance", default=2.0, help="classifier-free guidance scale"),
    of(SampleRequest, "scheduler", help="the sampler"),
    of(SampleRequest, "size", kind="int", help="output size (default: the model's)"),
    of(SampleRequest, "batch_size", help="images made at once"),
))


def sample_request(fields: Mapping[str, object], loras: tuple = ()) -> SampleRequest:
    """The sample request from plain values (form text and numbers, an argparse namespace's
    dict); missing or empty fields take :data:`SAMPLE`'s defaults; a prompt overrides the class.

    Raises:
        InvalidRequest: naming every bad field.
    """
    f = SAMPLE.parse(fields)
    request = SampleRequest(
        class_label=None if f["prompt"] else f["class_label"], prompt=f["prompt"],
        negative_prompt=f["negative_prompt"], n=f["n"], seed=f["seed"], steps=f["steps"],
        guidance=f["guidance"], scheduler=f["scheduler"], size=f["size"],
        batch_size=f["batch_size"], loras=loras)
    request.validate()
    return request

def sample_work(db: Database, workspace: Workspace, person: Person, model_id: str,
                checkpoint: str | None, request: SampleRequest, holder: dict) -> Work:
    """The job that samples ``request`` batch by batch into ``holder["images"]`` (an unknown
    model is refused now, not in the job)."""
    authorise(db, person)
    describe_model(workspace, model_id)

    def work(progress: Progress, cancel: CancelToken) -> str:
        generator = load_generator(workspace, model_id, checkpoint)
        holder["checkpoint"] = generator.checkpoint
        for start in range(0, request.n, request.batch_size):  # the generator's own batches
            part = replace(request, n=min(request.batch_size, request.n - start),
                           seed=request.seed + start)
            holder["images"] = holder["images"] + generator.sample(part, cancel=cancel)
            progress(len(holder["images"]), request.n,
                     f"{len(holder['images'])} of {request.n} images")
        return f"{request.n} image(s) from {model_id}@{generator.checkpoint}"

    return work


def grid_work(db: Database, workspace: Workspace, person: Person, model_id: str,
              checkpoint: str | None, base: SampleRequest, x_axis: str, xs: list, y_axis: str,
              ys: list, holder: dict) -> Work:
    """The job that makes an X/Y grid cell by cell into ``holder["cells"]``; a grid over the
    cell limit is refused now."""
    authorise(db, person)
    describe_model(workspace, model_id)
    check_grid(x_axis, xs, y_axis, ys)

    def on_cell(i: int, j: int, rgb: np.ndarray) -> None:
        holder["cells"][i][j] = rgb

    def work(progress: Progress, cancel: CancelToken) -> str:
        xy_grid(workspace, model_id, base, x_axis, xs, y_axis, ys, checkpoint,
                progress=progress, cancel=cancel, on_cell=on_cell)
        return f"grid of {len(xs) * len(ys)} cells from {model_id}"

    return work


def add_to_pool(db: Database, workspace: Workspace, person: Person, model_id: str,
                checkpoint: str | None, images: list, request: SampleRequest) -> list:
    """Store sampled images in the pool, each once (by SHA-256), with their provenance."""
    authorise(db, person)
    generator = load_generator(workspace, model_id, checkpoint)
    return store_generated(db, workspace, generator, model_id, images, request)


def sample_into_pool(db: Database, workspace: Workspace, person: Person, model_id: str,
                     request: SampleRequest, checkpoint: str | None = None,
                     progress: Progress = no_progress,
                     cancel: CancelToken | None = None) -> list[tuple[int, str]]:
    """Sample and store every image in the pool (the terminal's ``sample``)."""
    authorise(db, person)
    return sample_to_pool(db, workspace, model_id, request, checkpoint, progress, cancel)


def _background(workspace: Workspace, request: InpaintRequest,
                upload: str | Path | np.ndarray | None) -> Background:
    """The request's data-set frame, or the uploaded one (a file path, or pixels from a page:
    their PNG's SHA-256 stands for the file's)."""
    import hashlib

    import numpy as np

    from polyp_core.data.images import load_rgb, sha256_file
    from polyp_core.pool import png_bytes

    if upload is None:
        if request.dataset is None:
            raise ValueError("`image`: name a data set's frame or upload one")
        return frame_background(workspace, request.dataset, request.image)
    if isinstance(upload, np.ndarray):
        rgb = np.ascontiguousarray(upload[..., :3], dtype=np.uint8)
        return uploaded_background(rgb, "page upload", hashlib.sha256(png_bytes(rgb)).hexdigest())
    return uploaded_background(load_rgb(upload), Path(upload).name, sha256_file(upload))


def _inpaint_seeds(seeds: tuple[int, ...]) -> str:
    return ",".join(map(str, seeds))


#: The inpaint action, declared once: the CLI's options and the Generate tab's Inpaint panel
#: start from it; every default, bound and choice is ``InpaintRequest``'s.
INPAINT = Form("inpaint", "fill a polyp of a class into a real frame (the result and its mask "
                          "join the pool)", (
    of(InpaintRequest, "generator", required=True,
       help="a DDPM: --inpaint (trained), or --with-mask / plain (RePaint)"),
    of(InpaintRequest, "checkpoint", help="default: the last"),
    of(InpaintRequest, "class_label", option="--class",
       help="the class of the polyp to make (a one-class generator's when not given)"),
    of(InpaintRequest, "dataset", help="the background frame's data set"),
    of(InpaintRequest, "image", help="the background frame's id in --dataset"),
    of(InpaintRequest, "mask_source", help="own: the frame's polyp mask; drawn: a mask drawn "
                                           "on the frame; generated: sampled by "
                                           "--mask-generator"),
    of(InpaintRequest, "mask_generator", help="an image-and-mask model (train-ddpm --with-mask)"),
    of(InpaintRequest, "mask_seed", help="the generated mask's seed"),
    of(InpaintRequest, "dilate", help="hole: the mask grown by N px of the frame"),
    of(InpaintRequest, "whole_frame", help="the hole is the whole frame"),
    of(InpaintRequest, "window", help="lesion: fill a window around the hole at the model's "
                                      "size and paste it back into the frame at its own size; "
                                      "none: the whole frame at the model's size"),
    of(InpaintRequest, "seeds", kind="text", show=_inpaint_seeds,
       help="one result per seed: e.g. 0-7 or 0,3,5"),
    of(InpaintRequest, "steps", help="denoising steps"),
    of(InpaintRequest, "guidance", help="classifier-free guidance scale"),
    of(InpaintRequest, "scheduler", help="the trained method's sampler"),
    of(InpaintRequest, "jump_length", help="RePaint: jump back this many steps"),
    of(InpaintRequest, "jump_n_sample", help="RePaint: jumps per jump point"),
    of(InpaintRequest, "batch_size", help="results made at once"),
))


def inpaint_request(fields: Mapping[str, object]) -> InpaintRequest:
    """The inpaint request from plain values (form text and numbers, an argparse namespace's
    dict): unknown fields are refused, missing or empty ones take :data:`INPAINT`'s defaults.

    Raises:
        InvalidRequest: naming every bad field.
        ValueError: seeds that are not a range or a list.
    """
    f = INPAINT.parse(fields)
    return InpaintRequest(
        generator=f["generator"] or "", checkpoint=f["checkpoint"],
        class_label=f["class_label"] or "", dataset=f["dataset"], image=f["image"],
        mask_source=f["mask_source"], mask_generator=f["mask_generator"],
        whole_frame=f["whole_frame"], window=f["window"], seeds=parse_seeds(str(f["seeds"])),
        guidance=f["guidance"], scheduler=f["scheduler"],
        **{k: f[k] for k in ("mask_seed", "dilate", "steps", "jump_length", "jump_n_sample",
                             "batch_size")})

def inpaint_work(db: Database, workspace: Workspace, person: Person, request: InpaintRequest,
                 upload: str | Path | np.ndarray | None = None, drawn: np.ndarray | None = None,
                 holder: dict | None = None) -> Work:
    """Inpainting, for both front ends: the frame, the generator and the masks are checked and
    planned now (so a bad request is refused before anything is queued or loaded); the work
    fills the hole for every seed with those masks, stores the results in the pool with their
    masks and leaves ``holder["result"]``, ``holder["stored"]`` (pool id, SHA-256) and
    ``holder["request"]`` (with a one-class generator's class when none was given). A mask
    that a model generates is made by the work itself, once."""
    authorise(db, person)
    request.validate()
    background = _background(workspace, request, upload)
    classes = describe_model(workspace, request.generator)["classes"]
    if not request.class_label and len(classes) == 1:  # a one-class model (scheme lesion)
        request = replace(request, class_label=classes[0])
    planned = None if request.mask_source == "generated" else \
        plan_masks(workspace, request, background, drawn)
    out = {} if holder is None else holder

    def work(progress: Progress, cancel: CancelToken) -> str:
        result = inpaint(workspace, request, background, drawn, progress, cancel, planned)
        out["stored"] = store_inpainted(db, workspace, request, result)
        out["result"], out["request"] = result, request
        return (f"{len(result.images)} inpainted {request.class_label} image(s) from "
                f"{request.generator}@{result.checkpoint} on {background.name}")

    return work


def background_frames(db: Database, workspace: Workspace, person: Person, dataset: str,
                      split: str = "train") -> list[str]:
    """Ids of a data set's frames with a polyp mask in ``split`` (the training side: a frame of
    a validation or test group would bar its images from every fold that holds it)."""
    authorise(db, person)
    manifest = workspace.load_manifest(dataset)
    return [i.id for i in manifest.items if i.mask and (split == "all" or i.split == split)]


def background_frame(db: Database, workspace: Workspace, person: Person, dataset: str,
                     image_id: str) -> Background:
    """A data set's frame and its polyp mask, to show and draw on (the Generate tab)."""
    authorise(db, person)
    return frame_background(workspace, dataset, image_id)


#: Copy-paste, declared once: the CLI's ``copy-paste`` options start from it.
COPY_PASTE = Form("copy-paste", "the conventional baseline: training polyps of a class cut out, "
                                "scaled, flipped, colour-matched and pasted into other frames "
                                "(the images and their masks join the pool)", (
    of(CopyPasteRequest, "dataset", positional=True, help="the real data set"),
    of(CopyPasteRequest, "class_label", option="--class",
       help="the class of the polyps (a one-class data set's when not given)"),
    of(CopyPasteRequest, "n", help="how many images"),
    of(CopyPasteRequest, "seed", help="image k is seeded seed + k"),
    of(CopyPasteRequest, "generator", help="its name in the pool"),
    of(CopyPasteRequest, "source_split", help="the split the polyps are cut from"),
    of(CopyPasteRequest, "target_split", help="the split of the frames they are pasted into "
                                              "(train for retraining)"),
    of(CopyPasteRequest, "scale", help="the polyp is scaled by a factor in [1/scale, scale]"),
))


def copy_paste_request(fields: Mapping[str, object]) -> CopyPasteRequest:
    """The copy-paste request from plain values; missing or empty ones take
    :data:`COPY_PASTE`'s defaults.

    Raises:
        InvalidRequest: naming every bad field.
    """
    f = COPY_PASTE.parse(fields)
    return CopyPasteRequest(**{k: ("" if v is None and k in ("dataset", "class_label") else v)
                               for k, v in f.items()})


def copy_paste_work(db: Database, workspace: Workspace, person: Person,
                    request: CopyPasteRequest, holder: dict | None = None) -> Work:
    """Copy-paste, for both front ends: the data set, the class and the frames are checked now
    (a class with one training polyp is refused before anything is made); the work makes the
    images, registers the generator and stores them, leaving ``holder["stored"]`` and
    ``holder["class"]``."""
    from polyp_core.generation.copy_paste import copy_paste, frames_for, store_pasted

    authorise(db, person)
    request.validate()
    frames_for(workspace, request)
    out = {} if holder is None else holder

    def work(progress: Progress, cancel: CancelToken) -> str:
        label, made = copy_paste(workspace, request, progress, cancel)
        out["stored"], out["class"] = store_pasted(db, workspace, request, label, made), label
        return f"{len(made)} copy-paste {label} image(s) into {request.dataset}"

    return work

