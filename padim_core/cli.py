"""Command line: ``padim fit``, ``predict``, ``evaluate``, ``export`` and ``serve``, and the
workspace's ``padim models`` / ``padim history`` (in ``store_commands``).

Also runnable as ``python -m padim_core``. Every expected failure (a ``PadimError`` or an
``OSError``) ends with one line ``padim: error: <message>`` on stderr and no traceback:
exit code 2 when the command line itself cannot be used (unknown option, an option value out
of range, a device that is not here), 1 for everything found at run time (missing or
unreadable files, damaged model files, missing weights). Ctrl-C exits 130 without a trace.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np

from . import access_commands, store_commands
from .allocator import keep_freed_memory
from .backbones import SPECS
from .config import DEFAULTS, PRESETS
from .datasets import MVTecCategory, find_dataset_root, training_images
from .devices import resolve_device
from .embedding import REDUCTIONS, UPSAMPLE_MODES
from .errors import InvalidInputError, PadimError
from .evaluation import EvaluationReport, evaluate_model
from .images import RESIZE_MODES, iter_image_files
from .machine import machine_info, ru_maxrss_mb
from .model import PadimModel, PredictResult, __version__
from .names import relative_names
from .regions import (
    VERDICT_RULES,
    area_in_pixels,
    check_min_area,
    load_region,
    region_words,
    summary,
)
from .tables import spreadsheet_safe
from .updates import NG_UNDER_MODEL
from .visualize import OVERLAY_SCALE, threshold_overlay_png

PROG = "padim"
EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
ENGINES = ("torch", "onnxruntime")


#: PadimConfig field -> the option that sets it, so config errors name the option.
_OPTION_OF_FIELD = {
    "backbone": "--backbone", "d": "--d", "image_size": "--size", "crop": "--crop",
    "device": "--device", "seed": "--seed", "weights": "--weights", "reduction": "--reduction",
    "batch_size": "--batch-size", "calibration_fraction": "--calibration-fraction",
    "sigma": "--sigma", "score_top_percent": "--score-top-percent", "resize": "--resize",
    "upsample": "--upsample",
}
#: Fit options and their PadimConfig fields (argparse dest -> field).
_FIT_FIELDS = {
    "backbone": "backbone", "weights": "weights", "d": "d", "size": "image_size",
    "crop": "crop", "seed": "seed", "reduction": "reduction", "batch_size": "batch_size",
    "calibration_fraction": "calibration_fraction", "sigma": "sigma",
    "score_top_percent": "score_top_percent", "resize": "resize", "upsample": "upsample",
}



class UsageError(Exception):
    """The command line cannot be used as written (exit code 2)."""


# --------------------------------------------------------------------------- argument parsing


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``padim: error: ...``) raised instead of printed."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    """Options that configure a new model. Defaults are None here so that ``evaluate``
    can tell whether one was given together with ``--model``."""
    g = parser.add_argument_group("model options")
    g.add_argument("--preset", choices=list(PRESETS),
                   help="starting settings that the other options adjust: quality (the "
                        "default: EfficientNet-Lite2, all 192 channels, the whole image at 224 "
                        "px with mirrored bands, bilinear upsampling, top 0.5 %% score) or "
                        "reference (the PaDiM paper: EfficientNet-Lite0, d = 100, 256 px with a "
                        "224 centre crop, nearest upsampling, map maximum: ~0.7x the predict "
                        "time, 3.5x faster updates, 3.3x smaller files, weaker detection; "
                        "docs/quality.md)")
    g.add_argument("--backbone", choices=list(SPECS),
                   help=f"feature extractor (default {DEFAULTS.backbone})")
    g.add_argument("--weights", metavar="PATH|random",
                   help="backbone weights file (default: the installed or torch-hub file); "
                        "'random' only for timing and tests")
    g.add_argument("--d", type=int, metavar="N",
                   help=f"feature channels kept (default: the backbone's own: {DEFAULTS.d}, all "
                        f"channels, for {DEFAULTS.backbone}; 100 for efficientnet_lite0)")
    g.add_argument("--size", type=int, metavar="S",
                   help=f"image size: the long side with the padded resizes, the square with "
                        f"stretch (default {DEFAULTS.image_size})")
    g.add_argument("--resize", choices=list(RESIZE_MODES),
                   help="stretch: square resize (the PaDiM paper); pad: keep the aspect ratio, "
                        "long side to --size, centred on black, no crop (for non-square parts "
                        "of varying size); pad-reflect: the same with the part's mirror image "
                        f"in the bands (default {DEFAULTS.resize})")
    g.add_argument("--upsample", choices=list(UPSAMPLE_MODES),
                   help="how the coarser feature maps reach the finest one's grid: nearest "
                        "(replicated, the PaDiM paper) or bilinear (interpolated; better on "
                        f"both data sets measured, docs/quality.md) (default {DEFAULTS.upsample})")
    g.add_argument("--crop", type=int, metavar="C",
                   help="centre crop fed to the model, with --resize stretch (default 7/8 of "
                        "--size: 224 for 256; --crop equal to --size keeps the border); the "
                        "padded resizes do not crop")
    g.add_argument("--seed", type=int, metavar="N",
                   help=f"seed of the channel choice and calibration split "
                        f"(default {DEFAULTS.seed})")
    g.add_argument("--reduction", choices=list(REDUCTIONS),
                   help=f"how the d channels are chosen (default {DEFAULTS.reduction})")
    g.add_argument("--batch-size", type=int, metavar="N",
                   help=f"images per batch (default {DEFAULTS.batch_size})")
    g.add_argument("--calibration-fraction", type=float, metavar="F",
                   help="share of the normal images scored leave-one-out to set the thresholds "
                        f"(default {DEFAULTS.calibration_fraction})")
    g.add_argument("--sigma", type=float, metavar="PX",
                   help="Gaussian blur of the anomaly map, in pixels of the crop; 0 = none "
                        f"(default {DEFAULTS.sigma:g})")
    g.add_argument("--score-top-percent", type=float, metavar="P",
                   help="image score = mean of the top P %% of the blurred map's pixels; 0 = "
                        "its maximum, as in the PaDiM paper "
                        f"(default {DEFAULTS.score_top_percent:g})")


def _add_region_options(parser: argparse.ArgumentParser) -> None:
    """Where to look and how small a defect counts (docs/regions.md)."""
    g = parser.add_argument_group("region and defect size (docs/regions.md)")
    g.add_argument("--region", metavar="MASK.png",
                   help="inspect only the white pixels of this mask (black = ignore); resized "
                        "to the crop; thresholds are recalibrated for it")
    g.add_argument("--min-defect-area", type=float, metavar="N",
                   help="defect regions smaller than N pixels of the crop (N mm² with "
                        "--pixel-size) are noise: no outline, not counted (default 0)")
    g.add_argument("--pixel-size", type=float, metavar="MM",
                   help="size of one crop pixel in mm; makes --min-defect-area mm²")
    g.add_argument("--verdict-rule", choices=VERDICT_RULES,
                   help="score: NG when the score reaches the image threshold (default); "
                        "area: NG when a defect region of at least --min-defect-area exists")


def _apply_region_options(args: argparse.Namespace, model: PadimModel) -> None:
    """Set the region and defect rule from the options given (the region recalibrates the
    thresholds of a fitted model); option errors name the option."""
    crop = model.config.crop
    try:
        if args.region is not None:
            region, notes = load_region(args.region, crop)
            for note in notes:
                _warn(note)
            if model.is_fitted:
                model.set_region(region)
            else:
                model.region = region
        area = args.min_defect_area
        if area is not None and args.pixel_size is not None:
            area = area_in_pixels(area, args.pixel_size)
        elif args.pixel_size is not None:
            raise UsageError("--pixel-size needs --min-defect-area")
        if area is not None:
            area = check_min_area(area, crop, "--min-defect-area")
        model.set_defect_rule(area, args.verdict_rule)
    except InvalidInputError as err:
        if err.source in ("mm_per_pixel", "--min-defect-area"):
            raise UsageError(f"{'--pixel-size' if err.source == 'mm_per_pixel' else err.source}"
                             f": {err.problem}") from None
        raise


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="D",
                        help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars on stderr (default: when stderr is a terminal)")


def _add_recursive(parser: argparse.ArgumentParser, where: str) -> None:
    parser.add_argument("-r", "--recursive", action="store_true",
                        help=f"also take the images in every folder below {where} (hidden "
                             "ones skipped; names keep their folders: good/000.png)")


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Dask cluster (docs/cluster.md)").add_mutually_exclusive_group()
    g.add_argument("--cluster", metavar="local:N",
                   help="run on a local Dask cluster of N worker processes")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on the Dask cluster of this scheduler, e.g. tcp://host:8786")


COMPACT_HELP = ("write a smaller file without the data 'padim update' needs (it can only "
                "be refitted then)")


def build_parser() -> argparse.ArgumentParser:
    """The ``padim`` argument parser."""
    parser = _Parser(
        prog=PROG,
        description="PaDiM Inspector: learn normal parts from images, flag anomalies.",
        epilog="Exit codes: 0 ok, 1 runtime error (files, data, weights), 2 usage error, "
               "130 interrupted.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    fit = sub.add_parser(
        "fit", help="fit a model on normal images",
        description="Fit a PaDiM model on normal (defect-free) images and save it.")
    fit.add_argument("data", metavar="DATA",
                     help="a folder of normal images, or an MVTec-style category (uses "
                          "train/good)")
    _add_recursive(fit, "DATA (an MVTec category still gives only its train/good)")
    fit.add_argument("-o", "--output", metavar="MODEL",
                     help="model file to write (.safetensors); and/or --save-as NAME")
    fit.add_argument("--compact", action="store_true", help=COMPACT_HELP)
    _add_fit_options(fit)
    _add_region_options(fit)
    _add_common(fit)
    store_commands.add_fit_options(fit)
    _add_cluster_options(fit)

    upd = sub.add_parser(
        "update", help="add normal images to a fitted model (exact, no refit)",
        description="Add normal images to MODEL: the result equals a fit on the old and new "
                    "images together (same calibration images); the old images are not "
                    "needed. Writes NEW_MODEL and leaves MODEL as it is.")
    upd.add_argument("model", metavar="MODEL",
                     help="model file written by 'padim fit', or NAME[@VERSION] of the "
                          "library when no such file exists")
    upd.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                     help="normal image files and/or folders of them")
    _add_recursive(upd, "each folder given")
    upd.add_argument("-o", "--output", metavar="NEW_MODEL",
                     help="model file to write (may be MODEL itself); and/or --save-as NAME")
    upd.add_argument("--compact", action="store_true", help=COMPACT_HELP)
    upd.add_argument("--include-ng", action="store_true",
                     help="also learn images the model scores NG (at or above its image "
                          "threshold); by default they are left out and listed with their "
                          "score")
    _add_common(upd)
    store_commands.add_fit_options(upd)

    pred = sub.add_parser(
        "predict", help="score images with a fitted model",
        description="Score images; write results.csv, skipped.csv and overlays/<stem>.png "
                    f"(heat map scaled {OVERLAY_SCALE[0]}x..{OVERLAY_SCALE[1]}x the pixel "
                    "threshold, outlines where the map reaches the pixel threshold).")
    pred.add_argument("model", nargs="?", metavar="MODEL",
                      help="model file written by 'padim fit' (left out with --model NAME)")
    pred.add_argument("inputs", nargs="*", metavar="IMAGE_OR_DIR",
                      help="image files and/or folders of images")
    _add_recursive(pred, "each folder given")
    pred.add_argument("--out", required=True, metavar="DIR", help="output folder")
    pred.add_argument("--engine", choices=ENGINES, default=ENGINES[0],
                      help="torch (default: MODEL is a .safetensors file) or onnxruntime "
                           "(MODEL is an .onnx file written by 'padim export'; CPU)")
    _add_common(pred)
    store_commands.add_predict_options(pred)
    _add_cluster_options(pred)

    ev = sub.add_parser(
        "evaluate", help="measure a model on a labelled MVTec-style set",
        description="Fit on DATA/train/good (or load --model), predict DATA/test and report "
                    "image/pixel AUROC, AUPRO, F1, timing and memory.")
    ev.add_argument("data", metavar="DATA", help="MVTec-style category folder")
    ev.add_argument("--model", metavar="MODEL",
                    help="evaluate this model file (or NAME[@VERSION] of the library when no "
                         "such file exists) instead of fitting one")
    ev.add_argument("--json", metavar="FILE", help="write the full report as JSON here")
    ev.add_argument("--save-model", metavar="MODEL", help="also save the fitted model here")
    _add_fit_options(ev)
    _add_region_options(ev)
    _add_common(ev)
    store_commands.add_data_dir(ev)
    _add_export_and_serve(sub)
    store_commands.add_parsers(sub)
    access_commands.add_parsers(sub)
    return parser


def _add_export_and_serve(sub: Any) -> None:
    exp = sub.add_parser(
        "export", help="write a fitted model as ONNX (after a parity check)",
        description="Write MODEL as one ONNX graph (uint8 crops in; scores and maps out) "
                    "and check it with onnxruntime against padim_core: nothing is written "
                    "when scores differ by more than 1e-4 relative or maps by 1e-3.")
    exp.add_argument("model", metavar="MODEL",
                     help="model file written by 'padim fit', or NAME[@VERSION] of the "
                          "library when no such file exists")
    exp.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="ONNX file to write (.onnx; large models add FILE.data)")
    exp.add_argument("--check-images", metavar="DIR",
                     help="images to check the export on (default: synthetic demo images)")
    exp.set_defaults(progress=None)
    store_commands.add_data_dir(exp)
    srv = sub.add_parser(
        "serve", help="serve a model over HTTP (FastAPI)",
        description="Score images sent to POST /predict; OpenAPI page at /docs.")
    srv.add_argument("model", nargs="?", metavar="MODEL",
                     help="model file written by 'padim fit' (left out with --model NAME)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on "
                                                          "(default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    srv.add_argument("--max-batch", type=int, default=32, metavar="N",
                     help="most images scored in one pass (default 32)")
    srv.add_argument("--max-wait-ms", type=float, default=5.0, metavar="MS",
                     help="how long a batch waits for more requests (default 5)")
    srv.add_argument("--max-concurrent", type=int, default=None, metavar="N",
                     help="requests holding an image (upload, decoding, full-size picture "
                          "until scored) at once; the rest wait (default 2 x CPU cores)")
    srv.add_argument("--device", default="auto", metavar="D",
                     help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    srv.add_argument("--require-token", action="store_true",
                     help="ask for an API token (Authorization: Bearer) on loopback too; on "
                          "any other --host tokens are always required (padim tokens add)")
    store_commands.add_serve_options(srv)
    srv.set_defaults(progress=None)


# --------------------------------------------------------------------------- helpers


def _err_line(err: BaseException) -> str:
    """One line naming the file, from a PadimError or OSError."""
    if isinstance(err, OSError) and not isinstance(err, PadimError) and err.filename:
        text = f"{err.filename}: {err.strerror or err}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def _say(message: str, stream: TextIO | None = None) -> None:
    """Print a line, above any progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=stream or sys.stdout)


def _warn(message: str) -> None:
    _say(f"{PROG}: warning: {' '.join(message.split())}", sys.stderr)


class _Progress:
    """A ``progress(done, total, stage)`` callback drawing one tqdm bar per stage."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._stage: str | None = None

    def __call__(self, done: int, total: int, stage: str) -> None:
        if not self.enabled or stage == "done":
            return
        from tqdm import tqdm

        if self._bar is None or stage != self._stage or total != self._bar.total:
            self.close()
            self._bar = tqdm(total=total, desc=stage, file=sys.stderr, leave=False,
                             dynamic_ncols=True, mininterval=0.5)
            self._stage = stage
        self._bar.update(max(0, done - self._bar.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar, self._stage = None, None


@contextmanager
def _warnings_as_lines(known: Callable[[], Sequence[str]] = list) -> Iterator[None]:
    """Print warnings raised inside as ``padim: warning:`` lines, leaving out ``known()``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        yield
    already = set(known())
    for message in dict.fromkeys(str(w.message) for w in caught):
        if message not in already:
            _warn(message)


def _check_device(device: str) -> None:
    try:
        resolve_device(device)
    except InvalidInputError as err:
        raise UsageError(f"--device: {err.problem}") from None


def _config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """PadimModel keyword arguments from the fit options that were given."""
    # An unset crop is PadimConfig's to choose (7/8 of the size for a square resize).
    return {**PRESETS[getattr(args, "preset", None) or "quality"],
            **{field: getattr(args, dest) for dest, field in _FIT_FIELDS.items()
               if getattr(args, dest) is not None}}


def _new_model(args: argparse.Namespace) -> PadimModel:
    """A configured, unfitted model; option errors become usage errors naming the option."""
    _check_device(args.device)
    try:
        model = PadimModel(device=args.device, **_config_kwargs(args))
    except InvalidInputError as err:
        option = _OPTION_OF_FIELD.get(err.source)
        if option is None:
            raise
        raise UsageError(f"{option}: {err.problem}") from None
    return model


def _load_engine(args: argparse.Namespace) -> Any:
    """The model ``predict`` scores with: a PadimModel, or an OnnxModel for onnxruntime."""
    if args.engine == "torch":
        if Path(args.model).suffix.lower() == ".onnx":
            raise UsageError(f"{args.model}: an ONNX file needs --engine onnxruntime")
        return _load_model(args.model, args.device)
    if args.device not in ("auto", "cpu"):
        raise UsageError("--device: the onnxruntime engine runs on the CPU")
    from .onnx_engine import OnnxModel

    return OnnxModel(args.model)


def _load_model(path: str, device: str) -> PadimModel:
    _check_device(device)
    model = PadimModel.load(path, device=device)
    _ = model.extractor
    return model


def _model_file_or_ref(args: argparse.Namespace, device: str) -> tuple[PadimModel, str]:
    """(model, what to call it) for ``args.model``: a model file (its backbone loaded now, so
    missing weights stop the command before any work), or a library NAME[@V] where no such
    file exists (``update``, ``evaluate --model``)."""
    return store_commands.model_by_ref(args, device) or (_load_model(args.model, device),
                                                         args.model)


def _cluster(args: argparse.Namespace) -> Any:
    """A context giving a Dask client for --cluster/--scheduler, or None without them."""
    where = args.cluster or args.scheduler
    if where is None:
        return nullcontext()
    n = args.cluster.removeprefix("local:") if args.cluster else "1"
    if args.cluster == n or not n.isdigit() or int(n) < 1:
        raise UsageError(f"--cluster: expected local:N with N >= 1, got {args.cluster!r}")
    from . import distributed  # Dask only when asked for
    return distributed.connect(where)


def _output_file(path: str) -> Path:
    """Check (and prepare the folder of) a file we will write, before any long work."""
    out = Path(path).expanduser()
    if out.is_dir():
        raise InvalidInputError(str(out), "is a folder; give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _print_card(card: dict[str, Any], saved: Path | None = None) -> None:
    """The model card as a short human summary (stdout)."""
    grid = "x".join(str(v) for v in card.get("grid", []))
    lines = [
        f"backbone     {card['backbone']} ({card['weights_origin']}), d={card['d']} "
        f"({card['reduction']}), resize {card['image_size']} {card.get('resize', 'stretch')} "
        f"-> crop {card['crop']}, "
        f"grid {grid}" + (f", {card['upsample']} upsampling"
                          if card.get("upsample", "nearest") != "nearest" else ""),
        f"images       {card['n_train_images']} fitted, {card['n_calibration_images']} "
        f"of them set the thresholds ({card['calibrated_on']})",
        f"thresholds   image {card['image_threshold']:.4g} (FPR {card['image_fpr']:g}), "
        f"pixel {card['pixel_threshold']:.4g} (FPR {card['pixel_fpr']:g})",
        f"fit          {card['fit_seconds']:.1f} s on {card['device']}",
    ]
    if card.get("region", "whole image") != "whole image" or card.get("min_defect_area"):
        lines.append(f"region       {card['region']}; defects from {card['min_defect_area']} "
                     f"px; verdict by {card['verdict_rule']}")
    skipped = card.get("skipped") or []
    if skipped:
        lines.append(f"skipped      {len(skipped)} input(s) not used:")
        lines += [f"  {name}: {reason}" for name, reason in skipped]
    lines += [f"note         {w}" for w in card.get("warnings") or []]
    lines += [f"update       +{u['added_images']} image(s) on {u['when']} in {u['seconds']:.1f} s "
              f"(thresholds before: "
              f"image {u['image_threshold_before']:.4g}, pixel {u['pixel_threshold_before']:.4g})"
              for u in card.get("updates") or []]
    if saved is not None:
        lines.append(f"saved        {saved} ({saved.stat().st_size / 2**20:.1f} MB)")
    for line in lines:
        _say(line)


def _overlay_relpath(name: str, used: set[str]) -> str:
    """``overlays/<stem>.png`` for a display name (its folders kept, made safe)."""
    parts = [p.replace("\\", "_") for p in name.split("/")]
    parts = ["_" if p in ("", ".", "..") else p for p in parts]
    leaf = parts[-1]
    stem = leaf.rsplit(".", 1)[0] if "." in leaf.lstrip(".") else leaf
    for candidate in (stem, leaf):
        rel = "/".join(["overlays", *parts[:-1], f"{candidate}.png"])
        if rel not in used:
            used.add(rel)
            return rel
    rel = "/".join(["overlays", *parts[:-1], f"{leaf}-{len(used)}.png"])
    used.add(rel)
    return rel


def _collect_inputs(items: Sequence[str], recursive: bool) -> list[Path]:
    """Image paths from files and folders given on the command line."""
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            paths += iter_image_files(path, recursive=recursive)
        elif path.exists():
            paths.append(path)
        else:
            raise InvalidInputError(str(path), "file or folder not found")
    return paths




# --------------------------------------------------------------------------- commands


def _cmd_fit(args: argparse.Namespace, progress: _Progress) -> int:
    store_commands.check_fit_args(args)
    model = _new_model(args)  # option errors first: they cost nothing to find
    _apply_region_options(args, model)
    paths = training_images(args.data, recursive=args.recursive)
    out = _output_file(args.output) if args.output else None
    with _cluster(args) as client:
        _ = model.extractor  # load the weights now: a missing file fails before any work
        _say(f"fitting on {len(paths)} image(s) from {args.data}")
        with _warnings_as_lines(lambda: model.warnings_ if model.is_fitted else []):
            if client is None:
                model.fit(paths, progress=progress)
            else:
                from . import distributed
                distributed.fit(model, paths, client, progress=progress)
    progress.close()
    if out is not None:
        model.save(out, updatable=not args.compact)
    _print_card(model.card(), out)
    if args.save_as is not None:
        store_commands.save_fitted(args, model)
    return EXIT_OK


def _cmd_update(args: argparse.Namespace, progress: _Progress) -> int:
    store_commands.check_fit_args(args)
    paths = _collect_inputs(args.inputs, args.recursive)
    out = _output_file(args.output) if args.output else None
    _check_device(args.device)
    model, source = _model_file_or_ref(args, args.device)
    if not model.card()["updatable"]:
        raise InvalidInputError(args.model, "has no update data (a compact file or one from "
                                            "before updates): refit it with 'padim fit'")
    n_updates = len(model.card()["updates"])
    _say(f"adding {len(paths)} image(s) to {args.model}")
    if not model.train_sha256_:
        _say(f"note: {args.model} does not record the files it was fitted on (written before "
             "2026-12-08): give only new images; of its own training images only those "
             "that set its thresholds are recognised", sys.stderr)
    with _warnings_as_lines(lambda: model.warnings_):
        model.partial_fit(paths, progress=progress, names=relative_names(paths),
                          max_score=None if args.include_ng else model.image_threshold_)
    progress.close()
    if len(model.card()["updates"]) == n_updates:
        raise InvalidInputError("images", f"none of the {len(paths)} input(s) could be added "
                                          "(unreadable, already learned by this model, or NG "
                                          "under it: see above): nothing written")
    if out is not None:
        model.save(out, updatable=not args.compact)
    _print_card(model.card(), out)
    n_ng = sum(NG_UNDER_MODEL in why for _, why in model.skipped_)
    if n_ng:
        _say(f"note: {n_ng} image(s) scored NG and were not learned; if they are good parts, "
             "look at them, then run again with --include-ng", sys.stderr)
    if args.save_as is not None:
        store_commands.save_updated(args, model, source)
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace, progress: _Progress) -> int:
    paths = _collect_inputs(store_commands.check_predict_args(args), args.recursive)
    if args.recursive:  # a rerun must not score the overlays of the last one
        out = Path(args.out).expanduser().resolve()
        paths = [p for p in paths if not p.resolve().is_relative_to(out)]
    names = relative_names(paths)
    if args.library_model is None:
        model, recorder, store = _load_engine(args), None, None
    else:
        if args.engine != ENGINES[0]:
            raise UsageError("--model NAME scores with the library's .safetensors file: use "
                             "--engine torch")
        _check_device(args.device)
        model, recorder, store = store_commands.library_model(args)
    try:
        return _predict_into(args, progress, model, paths, names, recorder)
    finally:
        if store is not None:
            store.close()


def _predict_into(args: argparse.Namespace, progress: _Progress, model: Any,
                  paths: list[Path], names: list[str],
                  recorder: store_commands.Recorder | None) -> int:
    if (args.cluster or args.scheduler) and not isinstance(model, PadimModel):
        raise UsageError("--cluster/--scheduler score with the torch engine")
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise InvalidInputError(str(out), "exists and is not a folder")
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    path_of = dict(zip(names, paths, strict=True))
    used: set[str] = set()
    n_ok = n_ng = n_skipped = 0
    with (_cluster(args) as client,
          open(out / "results.csv", "w", newline="", encoding="utf-8") as fh,
          open(out / "skipped.csv", "w", newline="", encoding="utf-8") as sk,
          _warnings_as_lines()):
        rows, bad = csv.writer(fh), csv.writer(sk)
        rows.writerow(["name", "score", "normalized_score", "verdict", "overlay", "path",
                       "defect_regions", "largest_defect_area", "defect_boxes", "details"])
        bad.writerow(["name", "reason", "path"])
        part: PredictResult
        if client is None:
            parts = model.iter_predict(paths, progress=progress, names=names)
        else:
            from . import distributed
            parts = distributed.iter_predict(model, paths, client, progress, names)
        for part in parts:
            ng = part.verdicts()
            for i, name in enumerate(part.names):
                rel = _overlay_relpath(name, used)
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                png = threshold_overlay_png(part.images[i], part.maps[i], part.pixel_threshold,
                                            part.region, part.min_defect_area)
                target.write_bytes(png)
                found = summary(part.defects(i)[0])
                details = _write_details(out, rel, name, part, i, bool(ng[i]), found)
                if recorder is not None:
                    recorder.add(name, path_of[name], part.scores[i], part.images[i], png,
                                 bool(ng[i]))
                rows.writerow([spreadsheet_safe(name), f"{part.scores[i]:.6g}",
                               f"{part.normalized[i]:.6g}", "NG" if ng[i] else "OK",
                               spreadsheet_safe(rel), spreadsheet_safe(str(path_of[name])),
                               found["n_defect_regions"], found["largest_defect_area"],
                               boxes_text(found), spreadsheet_safe(details)])
                n_ng += bool(ng[i])
                n_ok += not ng[i]
            for name, reason in part.skipped:
                _say(f"{PROG}: skipped {path_of.get(name, name)}: {reason}", sys.stderr)
                bad.writerow([spreadsheet_safe(name), spreadsheet_safe(reason),
                              spreadsheet_safe(str(path_of.get(name, name)))])
                n_skipped += 1
            fh.flush()
            sk.flush()
            if recorder is not None:
                recorder.flush()
    progress.close()
    _say(f"{n_ok + n_ng} image(s) scored: {n_ok} OK, {n_ng} NG"
         + (f", {n_skipped} skipped (see {out / 'skipped.csv'})" if n_skipped else ""))
    _say(f"results: {out / 'results.csv'}, overlays: {out / 'overlays'}")
    if recorder is not None:
        _say(f"history: {recorder.count} row(s) recorded for {recorder.version.ref}")
    if n_skipped and not n_ok + n_ng:       # a line script checking $? must notice
        _say(f"{PROG}: error: none of the {n_skipped} input(s) could be scored",
             sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def boxes_text(found: dict[str, Any]) -> str:
    """Bounding boxes for a CSV cell, as JSON: ``[[x, y, width, height], ...]`` (``[]``: none;
    never an empty cell)."""
    return json.dumps([[r["x"], r["y"], r["width"], r["height"]]
                       for r in found["defect_regions"]])


def _write_details(out: Path, overlay_rel: str, name: str, part: PredictResult, i: int,
                   ng: bool, found: dict[str, Any]) -> str:
    """``defects/<stem>.json`` next to the overlays: the image's score, verdict and defect
    regions (areas in pixels of the crop, boxes in crop coordinates); its relative path."""
    rel = "defects/" + overlay_rel.removeprefix("overlays/").removesuffix(".png") + ".json"
    target = out / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    score = float(part.scores[i])
    target.write_text(json.dumps({
        "name": name, "score": score if np.isfinite(score) else None,
        "verdict": "NG" if ng else "OK", "verdict_rule": part.verdict_rule,
        "min_defect_area": part.min_defect_area,
        "region": region_words(part.region), "pixel_threshold": part.pixel_threshold,
        "crop": int(part.maps.shape[-1]), **found}, indent=2) + "\n", encoding="utf-8")
    return rel


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    out = _output_file(args.output)
    # not _model_file_or_ref: export_onnx names missing weights itself
    model, label = store_commands.model_by_ref(args, "cpu") or \
        (PadimModel.load(args.model, device="cpu"), args.model)
    _say(f"exporting {label} -> {out}, checking it with onnxruntime")
    report = export_onnx(model, out, check_images=args.check_images)
    _say(report.summary())
    data = out.with_name(out.name + ".data")
    extra = f" + {data.name} ({data.stat().st_size / 2**20:.1f} MB)" if data.exists() else ""
    _say(f"saved {out} ({out.stat().st_size / 2**20:.1f} MB){extra}")
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise UsageError(f"--port: must be 1..65535, got {args.port}")
    if args.max_batch < 1:
        raise UsageError(f"--max-batch: must be at least 1, got {args.max_batch}")
    if not args.max_wait_ms >= 0:
        raise UsageError(f"--max-wait-ms: must be 0 or more, got {args.max_wait_ms}")
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError(f"--max-concurrent: must be at least 1, got {args.max_concurrent}")
    import uvicorn

    from .service import create_app

    _check_device(args.device)
    _check_port_free(args.host, args.port)       # before seconds of loading the model
    check_token = access_commands.token_checker(args)
    live, what = store_commands.served_model(args)
    app = create_app(live, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                     check_token=check_token, max_concurrent=args.max_concurrent)
    _say(f"serving {what} on http://{args.host}:{args.port} (API docs at /docs"
         f"{'; API token required' if check_token else ''})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return EXIT_OK


def _check_port_free(host: str, port: int) -> None:
    """One line naming the address when it cannot be listened on (uvicorn logs the bind
    failure and exits with status 3, after the model has loaded)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise UsageError(f"--host {host}: not an address of this machine ({err.strerror})"
                         ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as err:
            raise InvalidInputError(f"--host {host} --port {port}",
                                    f"cannot listen there ({err.strerror})") from None


def _print_report(result: dict[str, Any], report: EvaluationReport) -> None:
    card = result["model"]
    f1_thr = report.image_f1_threshold
    lines = [
        f"{result['data']}: {report.n_images} test images ({report.n_anomalous} anomalous), "
        f"model {card['backbone']} d={card['d']} {card['reduction']} "
        f"{card['image_size']}->{card['crop']} {card.get('resize', 'stretch')}",
        f"  image AUROC          {_fmt(report.image_auroc)}",
        f"  pixel AUROC          {_fmt(report.pixel_auroc)}",
        f"  AUPRO (FPR<=0.3)     {_fmt(report.aupro)}",
        f"  image F1 (best)      {_fmt(report.image_f1)} at score >= {f1_thr:.4g}",
        f"  pixel F1 (best)      {_fmt(report.pixel_f1)}",
        f"  image F1 @ model thr {_fmt(report.image_f1_at_model_threshold)} "
        + (f"(threshold {card['image_threshold']:.4g})" if card.get("verdict_rule") != "area"
           else f"(area rule: a defect region of {card['min_defect_area']} px or more)"),
        f"  fit                  {result['fit_seconds']:.1f} s",
        f"  inference            {result['infer_ms_per_image']:.1f} ms/image on {card['device']}",
        f"  peak RSS             {result['peak_rss_mb']:.0f} MB",
        f"  {'defect type':<20} {'n':>4} {'image AUROC':>12} {'mean score':>11}",
    ]
    for dtype, row in report.per_defect_type.items():
        lines.append(f"  {dtype:<20} {row['count']:>4} {_fmt(row['image_auroc']):>12} "
                     f"{row['mean_score']:>11.4g}")
    if report.skipped:
        lines.append(f"  skipped {len(report.skipped)} unreadable test image(s):")
        lines += [f"    {n}: {r}" for n, r in report.skipped]
    if report.no_pixel_ground_truth:
        lines.append(f"  {len(report.no_pixel_ground_truth)} anomalous image(s) without a "
                     "usable mask (left out of pixel metrics)")
    for line in lines:
        _say(line)


def _check_evaluate_options(args: argparse.Namespace) -> None:
    """Usage errors of ``evaluate``: --model fixes every fit option."""
    given = [f"--{dest.replace('_', '-')}" for dest in ("preset", *_FIT_FIELDS)
             if getattr(args, dest) is not None]
    if args.model and given:
        raise UsageError(f"{', '.join(given)} cannot be used with --model "
                         "(the model file fixes them)")
    if args.model and args.save_model:
        raise UsageError("--save-model cannot be used with --model")


def _fit_for_evaluation(model: PadimModel, category: MVTecCategory, progress: _Progress,
                        model_out: Path | None) -> None:
    """Fit ``model`` on the category's train/good images (and save it if asked)."""
    _ = model.extractor
    _say(f"fitting on {len(category.train)} image(s) from {category.root / 'train/good'}")
    with _warnings_as_lines(lambda: model.warnings_ if model.is_fitted else []):
        model.fit(category.train, progress=progress)
    progress.close()
    if model_out is not None:
        model.save(model_out)


def _evaluation_result(args: argparse.Namespace, argv: Sequence[str], category: MVTecCategory,
                       model: PadimModel, report: EvaluationReport) -> dict[str, Any]:
    """Everything ``evaluate`` reports, JSON-safe (what ``--json`` writes)."""
    metrics = report.to_dict()
    return {
        "data": str(category.root),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([PROG, *argv]),
        **{key: metrics[key] for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1",
                                         "image_f1_threshold", "pixel_f1",
                                         "pixel_f1_threshold")},
        "calibrated_thresholds": {
            "image": metrics["model_image_threshold"],
            "pixel": metrics["model_pixel_threshold"],
            "image_f1_at_threshold": metrics["image_f1_at_model_threshold"],
            "pixel_f1_at_threshold": metrics["pixel_f1_at_model_threshold"],
        },
        "fit_seconds": round(float(model.fit_seconds_), 3),
        "fit_source": f"model file {args.model}" if args.model else "this run",
        "infer_ms_per_image": round(report.ms_per_image, 2),
        "peak_rss_mb": round(ru_maxrss_mb(), 1),
        "n_train_images": int(model.n_train_images_),
        "n_test_images": metrics["n_images"],
        "n_anomalous": metrics["n_anomalous"],
        "per_defect_type": metrics["per_defect_type"],
        "report": metrics,
        "model": model.card(),
        "machine": machine_info(),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON, atomically (a half-written report never replaces one)."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _cmd_evaluate(args: argparse.Namespace, progress: _Progress, argv: Sequence[str]) -> int:
    _check_evaluate_options(args)
    new_model = None if args.model else _new_model(args)
    category = MVTecCategory.from_folder(find_dataset_root(args.data))
    json_out = _output_file(args.json) if args.json else None
    model_out = _output_file(args.save_model) if args.save_model else None
    if new_model is None:
        model, _ = _model_file_or_ref(args, args.device)
        _apply_region_options(args, model)
    else:
        model = new_model
        _apply_region_options(args, model)
        _fit_for_evaluation(model, category, progress, model_out)
    _say(f"evaluating on {len(category.test)} test image(s)")
    with _warnings_as_lines():
        report = evaluate_model(model, category.test, progress=progress)
    progress.close()
    result = _evaluation_result(args, argv, category, model, report)
    if json_out is not None:
        _write_json(json_out, result)
    _print_report(result, report)
    if json_out is not None:
        _say(f"report: {json_out}")
    if model_out is not None:
        _say(f"model: {model_out}")
    return EXIT_OK


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``padim`` command line; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    progress = _Progress(False)
    try:
        try:
            args = build_parser().parse_args(args_list)
        except SystemExit as stop:  # --help / --version
            return stop.code if isinstance(stop.code, int) else EXIT_OK
        if args.command is None:
            build_parser().print_help(sys.stderr)
            return EXIT_USAGE
        progress = _Progress(sys.stderr.isatty() if args.progress is None else args.progress)
        if args.command == "fit":
            return _cmd_fit(args, progress)
        if args.command == "predict":
            return _cmd_predict(args, progress)
        if args.command == "update":
            return _cmd_update(args, progress)
        if args.command == "export":
            return _cmd_export(args)
        if args.command == "serve":
            return _cmd_serve(args)
        if args.command in store_commands.COMMANDS:
            return store_commands.run(args)
        if args.command in access_commands.COMMANDS:
            return access_commands.run(args)
        return _cmd_evaluate(args, progress, args_list)
    except UsageError as err:
        progress.close()
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (PadimError, OSError) as err:
        progress.close()
        print(f"{PROG}: error: {_err_line(err)}", file=sys.stderr)
        return EXIT_RUNTIME
    except MemoryError:
        progress.close()
        print(f"{PROG}: error: out of memory (try a smaller --batch-size or --d)",
              file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        progress.close()
        return EXIT_INTERRUPTED
