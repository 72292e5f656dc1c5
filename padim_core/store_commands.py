"""The workspace commands of ``padim``: ``models list|show|export|import|delete|rename|default|
thresholds``, ``history export``, ``audit list|export``, and the library side of ``fit
--save-as``, ``update [NAME@V] --save-as``, ``predict --model NAME --record`` and ``serve
--model NAME``.

``cli.py`` registers these parsers and dispatches here. Every command takes ``--data-dir``
(default ``PADIM_DATA_DIR``, else ``./inspector-data``) and honours ``PADIM_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import math
import os
from contextlib import suppress
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidInputError
from .live_model import DEFAULT_FOLLOW_SECONDS, LiveModel, Served
from .store import (
    DATA_DIR_ENV,
    DATABASE_URL_ENV,
    Filters,
    ModelVersion,
    NewInspection,
    Store,
    fitted_fingerprint,
    new_batch,
    parse_ref,
)

if TYPE_CHECKING:
    from .model import PadimModel

COMMANDS = ("models", "history", "audit")


# --------------------------------------------------------------------------- parsers


def add_data_dir(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help=f"workspace folder (default ${DATA_DIR_ENV}, else ./inspector-data); "
                             f"${DATABASE_URL_ENV} puts the database elsewhere")


def add_fit_options(fit: argparse.ArgumentParser) -> None:
    g = fit.add_argument_group("library")
    g.add_argument("--save-as", metavar="NAME",
                   help="also save the model as the next version of NAME in the library")
    g.add_argument("--note", default="", help="a note kept with the saved version")
    add_data_dir(g)


def add_predict_options(pred: argparse.ArgumentParser) -> None:
    g = pred.add_argument_group("library")
    g.add_argument("--model", dest="library_model", metavar="NAME[@VERSION]",
                   help="score with this library model (its default or newest version, or "
                        "VERSION) instead of a MODEL file; its saved operating thresholds "
                        "apply")
    g.add_argument("--record", action="store_true",
                   help="add one history row per scored image (needs --model)")
    g.add_argument("--operator", default="", help="operator name written on recorded rows")
    add_data_dir(g)


def add_parsers(sub: Any) -> None:
    """``padim models ...`` and ``padim history ...``."""
    models = sub.add_parser("models", help="the model library: list, show, export, import, "
                                           "delete, rename, default, thresholds",
                            description="The workspace's model library.")
    models.set_defaults(progress=False)   # main() reads it; these commands draw no bars
    actions = models.add_subparsers(dest="action", metavar="ACTION")
    p = actions.add_parser("list", help="every model and version with its card and status")
    add_data_dir(p)
    p = actions.add_parser("show", help="the full card of one version")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    add_data_dir(p)
    p = actions.add_parser("export", help="write a version's model file")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    add_data_dir(p)
    p = actions.add_parser("import", help="add a .safetensors model file as a new version")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", help="library name (default: the file name without suffix)")
    p.add_argument("--note", default="")
    add_data_dir(p)
    p = actions.add_parser("delete", help="delete one version (NAME@VERSION), or a whole model "
                                          "(NAME --all-versions); history rows stay")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--all-versions", action="store_true",
                   help="with NAME: delete every version of the model")
    add_data_dir(p)
    p = actions.add_parser("rename", help="rename a model; the history rows of its versions "
                                          "follow")
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    add_data_dir(p)
    p = actions.add_parser("default", help="pin the version used for NAME (NAME@VERSION), or "
                                           "go back to the newest (NAME --clear)")
    p.add_argument("ref", metavar="NAME[@VERSION]")
    p.add_argument("--clear", action="store_true",
                   help="no pinned version: NAME means its newest version again")
    add_data_dir(p)
    p = actions.add_parser("thresholds", help="save operating thresholds on a version "
                                              "(predict --model and serve use them instead of "
                                              "the calibrated ones), or --clear them")
    p.add_argument("ref", metavar="NAME@VERSION")
    p.add_argument("--image", type=float, metavar="X",
                   help="image threshold (default: the one the version operates with now)")
    p.add_argument("--pixel", type=float, metavar="Y",
                   help="pixel threshold (default: the one the version operates with now)")
    p.add_argument("--clear", action="store_true",
                   help="remove the saved thresholds: the calibrated ones apply again")
    add_data_dir(p)

    history = sub.add_parser("history", help="the inspection history: export",
                             description="The workspace's inspection history.")
    history.set_defaults(progress=False)
    actions = history.add_subparsers(dest="action", metavar="ACTION")
    p = actions.add_parser("export", help="write history rows as CSV (oldest first)")
    p.add_argument("--csv", required=True, metavar="FILE")
    p.add_argument("--since", metavar="DATE",
                   help="only rows from then on (2026-12-01 or 2026-12-01T08:00; local time "
                        "unless an offset is given)")
    p.add_argument("--model", metavar="NAME[@V]",
                   help="only rows of this model (NAME@V: of this version)")
    add_data_dir(p)

    audit = sub.add_parser("audit", help="the audit trail: who changed models, thresholds, "
                                         "accounts, tokens, decisions",
                           description="Every change to the workspace's shared state, who "
                                       "made it and when (docs/access.md).")
    audit.set_defaults(progress=False)
    actions = audit.add_subparsers(dest="action", metavar="ACTION")
    since_help = ("only events from then on (2026-12-01 or 2026-12-01T08:00; local time "
                  "unless an offset is given)")
    p = actions.add_parser("list", help="the newest events, one per line")
    p.add_argument("--since", metavar="DATE", help=since_help)
    p.add_argument("--action", dest="kind", metavar="ACTION",
                   help="one kind (model.delete, user.role, decision, …) or family (model, "
                        "user, token)")
    p.add_argument("--actor", metavar="NAME", help="only what this user did")
    p.add_argument("--last", type=int, default=50, metavar="N", help="at most N (default 50)")
    add_data_dir(p)
    p = actions.add_parser("export", help="write every event as CSV (oldest first)")
    p.add_argument("--csv", required=True, metavar="FILE")
    p.add_argument("--since", metavar="DATE", help=since_help)
    add_data_dir(p)


# --------------------------------------------------------------------------- helpers


def _usage(message: str) -> Exception:
    from .cli import UsageError

    return UsageError(message)


def _say(line: str) -> None:
    from .cli import _say as say

    say(line)


def cli_user() -> str:
    """Who saved a version from the command line: the login name, marked as the CLI's (it is
    not an account of the app)."""
    try:
        return f"{getpass.getuser()} (cli)"
    except (KeyError, OSError):
        return "(cli)"


def open_store(args: argparse.Namespace) -> Store:
    return Store.open(getattr(args, "data_dir", None))


def _version(store: Store, ref: str) -> ModelVersion:
    return store.library.resolve(ref, verify=True)


def _version_line(v: ModelVersion) -> str:
    image, pixel = v.thresholds
    saved = " (saved)" if v.operating_image_threshold is not None else ""
    return (f"{v.ref:<30} {'*' if v.is_default else ' '} {v.backbone:<18} d={v.d:<4} "
            f"{v.image_size}->{v.crop:<5} {v.n_train_images:>5} img  thr {image:.4g}/{pixel:.4g}"
            f"{saved}  {v.created_at:%Y-%m-%d %H:%M}  {v.size_bytes / 2**20:.1f} MB  {v.status}")


# --------------------------------------------------------------------------- commands


def run(args: argparse.Namespace) -> int:
    """``padim models ...`` / ``history ...`` / ``audit ...``; returns the exit code."""
    if args.action is None:
        raise _usage(f"{args.command}: give an action (see 'padim {args.command} --help')")
    with open_store(args) as store:
        if args.command == "history":
            return _history_export(store, args)
        if args.command == "audit":
            return (_audit_list if args.action == "list" else _audit_export)(store, args)
        return {"list": _models_list, "show": _models_show, "export": _models_export,
                "import": _models_import, "delete": _models_delete, "rename": _models_rename,
                "default": _models_default, "thresholds": _models_thresholds,
                }[args.action](store, args)


def _models_list(store: Store, args: argparse.Namespace) -> int:
    entries = store.library.models(verify=True)
    if not entries:
        _say(f"no models in {store.data_dir} ({store.url})")
        return 0
    _say(f"{'NAME@VERSION':<30} D {'BACKBONE':<18} {'d':<6} {'SIZE':<10} {'TRAIN':>5}      "
         "THRESHOLDS (image/pixel)  CREATED (UTC)     FILE")
    for entry in entries:
        for v in entry.versions:
            _say(_version_line(v))
    _say("D: * = default version (else the newest is used)")
    return 0


def _models_show(store: Store, args: argparse.Namespace) -> int:
    v = _version(store, args.ref)
    image, pixel = v.thresholds
    lines = [
        f"model        {v.ref}{' (default)' if v.is_default else ''}",
        f"file         {store.blobs.path(v.sha256)} ({v.status}, {v.size_bytes} bytes)",
        f"sha256       {v.sha256}",
        f"source       {v.source}, created {v.created_at.isoformat(timespec='seconds')}"
        + (f" by {v.created_by}" if v.created_by else ""),
        f"backbone     {v.backbone}, d={v.d}, resize {v.image_size} -> crop {v.crop}",
        f"images       {v.n_train_images} (training set fingerprint "
        f"{v.training_fingerprint or 'not recorded'})",
        f"fit          {v.fit_seconds:.1f} s on {v.device}",
        f"thresholds   calibrated image {v.image_threshold:.4g}, pixel {v.pixel_threshold:.4g}",
        f"operating    image {image:.4g}, pixel {pixel:.4g}"
        + (" (saved on this version)" if v.operating_image_threshold is not None
           or v.operating_pixel_threshold is not None else " (the calibrated ones)"),
    ]
    if v.note:
        lines.append(f"note         {v.note}")
    lines += _update_lines(v)
    for line in lines:
        _say(line)
    return 0


def _update_lines(v: ModelVersion) -> list[str]:
    """The update log in the version's card (inherited from the versions it was made from):
    each ``padim update`` / accept as normal, oldest first, with the calibrated thresholds
    before it and after it (the next update's "before", the version's for the last)."""
    updates = v.card.get("updates") or []
    if not updates:
        return []
    after = [(u["image_threshold_before"], u["pixel_threshold_before"]) for u in updates[1:]]
    after.append((v.image_threshold, v.pixel_threshold))
    lines = [f"updates      {len(updates)} (images added to the fitted model, oldest first)"]
    for u, (image, pixel) in zip(updates, after, strict=True):
        skipped = len(u.get("skipped") or [])
        lines.append(
            f"  {u['when']}  +{u['added_images']} image(s), {u['n_train_images_before']} -> "
            f"{u['n_train_images_before'] + u['added_images']} training images; "
            f"thresholds image {u['image_threshold_before']:.4g} -> {image:.4g}, pixel "
            f"{u['pixel_threshold_before']:.4g} -> {pixel:.4g}"
            + (f"; {skipped} skipped" if skipped else ""))
    return lines


def _models_export(store: Store, args: argparse.Namespace) -> int:
    from .cli import _output_file

    v = _version(store, args.ref)
    out = _output_file(args.output)
    data = store.library.read_bytes(v)
    tmp = out.with_name(out.name + ".part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    _say(f"exported {v.ref} to {out} ({len(data) / 2**20:.1f} MB)")
    return 0


def _models_import(store: Store, args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser()
    name = args.name if args.name is not None else path.name.removesuffix(".safetensors")
    v = store.library.import_file(path, name, note=args.note, created_by=cli_user())
    _say(f"imported {path} as {v.ref}")
    return 0


def _split_ref(store: Store, ref: str) -> tuple[str, int | None]:
    """(name, version or None) of ``ref``; a name with '@' in it is tried first, as in
    ``Library.resolve``."""
    try:
        return store.library.get(ref).name, None
    except InvalidInputError:
        return parse_ref(ref)


def _thresholds_words(image: float, pixel: float) -> str:
    return f"image {image:.4g}, pixel {pixel:.4g}"


def _models_delete(store: Store, args: argparse.Namespace) -> int:
    name, number = _split_ref(store, args.ref)
    if number is None:
        n = len(store.library.get(name).versions)     # a name not there: the library says so
        if not args.all_versions:
            raise _usage(f"{args.ref}: names the whole model; deleting it would delete all {n} "
                         f"version(s): pass --all-versions, or NAME@VERSION for one version")
    elif args.all_versions:
        raise _usage(f"--all-versions deletes a whole model: give {name} without "
                     f"@{number}, or leave the option out to delete {args.ref} only")
    n = store.library.delete(name, number, by=cli_user())
    what = f"{name}@{number}" if number is not None else f"{name} ({n} version(s))"
    _say(f"deleted {what}; its history rows are kept")
    return 0


def _models_rename(store: Store, args: argparse.Namespace) -> int:
    entry = store.library.rename(args.old, args.new, by=cli_user())
    _say(f"renamed {args.old} to {entry.name} ({len(entry.versions)} version(s)); the history "
         "rows of its versions follow")
    return 0


def _models_default(store: Store, args: argparse.Namespace) -> int:
    name, number = _split_ref(store, args.ref)
    if args.clear == (number is not None):
        raise _usage(f"{args.ref}: give NAME@VERSION to pin that version, or NAME --clear to "
                     "use the newest again")
    before = store.library.get(name).default_version
    entry = store.library.set_default(name, number, by=cli_user())
    was = "the newest" if before is None else f"{name}@{before}"
    current = entry.current
    now = (f"{name} means {name}@{number} now" if number is not None else
           f"{name} has no pinned version now: it means its newest"
           + (f" ({current.ref})" if current is not None else ""))
    _say(f"{now} (was {was})")
    return 0


def _models_thresholds(store: Store, args: argparse.Namespace) -> int:
    name, number = _split_ref(store, args.ref)
    if number is None:
        raise _usage(f"{args.ref}: give NAME@VERSION (thresholds are saved on one version)")
    given = args.image is not None or args.pixel is not None
    if args.clear == given:
        raise _usage("give --image X and/or --pixel Y, or --clear (one of them)")
    for option, value in (("--image", args.image), ("--pixel", args.pixel)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise _usage(f"{option}: must be a positive number, got {value:g}")
    v = store.library.version(name, number, verify=False)
    before = v.thresholds
    if args.clear:
        image, pixel = None, None
    else:     # an option left out keeps what the version operates with now
        image = args.image if args.image is not None else v.operating_image_threshold
        pixel = args.pixel if args.pixel is not None else v.operating_pixel_threshold
    v = store.library.set_thresholds(v, image, pixel, by=cli_user())
    what = ("operating thresholds cleared; the calibrated ones apply" if args.clear
            else "operating thresholds saved")
    _say(f"{v.ref}: {what}: {_thresholds_words(*v.thresholds)} "
         f"(was {_thresholds_words(*before)})")
    return 0


def parse_since(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _usage(f"--since: {text!r} is not a date (use 2026-12-01 or "
                     "2026-12-01T08:00)") from None


def _history_export(store: Store, args: argparse.Namespace) -> int:
    from .cli import _output_file

    since = parse_since(args.since) if args.since else None
    out = _output_file(args.csv)
    name, number = parse_ref(args.model) if args.model else (None, None)
    n = store.history.export_csv(out, Filters(since=since, model_name=name,
                                              model_version=number))
    _say(f"{n} history row(s) written to {out}")
    return 0


def _audit_list(store: Store, args: argparse.Namespace) -> int:
    if args.last < 1:
        raise _usage(f"--last: must be at least 1, got {args.last}")
    since = parse_since(args.since) if args.since else None
    events = store.audit.find(since, args.kind, args.actor, limit=args.last)
    if not events:
        _say(f"no audit events in {store.data_dir} ({store.url})")
        return 0
    for e in reversed(events):
        _say(f"{e.at.astimezone():%Y-%m-%d %H:%M:%S}  {e.actor:<20} {e.action:<16} "
             f"{e.target}: {e.details}")
    return 0


def _audit_export(store: Store, args: argparse.Namespace) -> int:
    from .cli import _output_file

    since = parse_since(args.since) if args.since else None
    out = _output_file(args.csv)
    n = store.audit.export_csv(out, since)
    _say(f"{n} audit event(s) written to {out}")
    return 0


# --------------------------------------------------------------------------- fit / predict


def check_fit_args(args: argparse.Namespace) -> None:
    if not args.output and not args.save_as:
        raise _usage("give -o MODEL (a file) and/or --save-as NAME (the library)")
    if args.save_as is not None:
        from .store import check_name

        check_name(args.save_as, "--save-as")


def save_fitted(args: argparse.Namespace, model: PadimModel) -> None:
    """``fit --save-as NAME``: the fitted model becomes the next version of NAME."""
    _save(args, model, args.note, "fit", fitted_fingerprint(model.train_sha256_))


def save_updated(args: argparse.Namespace, model: PadimModel, source: str) -> None:
    """``update MODEL --save-as NAME``: the updated model becomes the next version of NAME
    (source "update"); without ``--note`` the note says what it was made from."""
    added = model.card()["updates"][-1]["added_images"]
    _save(args, model, args.note or f"{source} + {added} image(s) added by padim update",
          "update", base=getattr(args, UPDATE_BASE, None))


#: Where ``model_by_ref`` leaves the library version an update starts from (on ``args``),
#: for ``save_updated`` to say what became of its operating thresholds.
UPDATE_BASE = "update_base"


def _save(args: argparse.Namespace, model: PadimModel, note: str, source: str,
          fingerprint: str = "", base: ModelVersion | None = None) -> None:
    """Save, then say what the new version changes for those using NAME: operating thresholds
    saved on ``base`` (else on the version NAME meant) do not carry over, and a pinned
    default keeps NAME on the old version."""
    with open_store(args) as store:
        if base is None:
            with suppress(InvalidInputError):      # a new name (a bad one: save says so)
                base = store.library.version(args.save_as, None, verify=False)
        v = store.library.save(model, args.save_as, note=note, training_fingerprint=fingerprint,
                               created_by=cli_user(), source=source)
        _say(f"library      {v.ref} in {store.data_dir}")
        if base is not None and (base.operating_image_threshold is not None
                                 or base.operating_pixel_threshold is not None):
            _say(f"operating    {base.ref} had operating thresholds "
                 f"{_thresholds_words(*base.thresholds)}; {v.ref} starts with its calibrated "
                 f"thresholds {_thresholds_words(*v.thresholds)} (set operating thresholds "
                 f"again with 'padim models thresholds {v.ref} --image X --pixel Y')")
        pinned = store.library.get(v.name).default_version
        if pinned is not None and pinned != v.version:
            _say(f"default      {v.name} still means {v.name}@{pinned} (its pinned default "
                 f"version): 'padim models default {v.ref}' makes it this one")


def model_by_ref(args: argparse.Namespace, device: str | None = None,
                 ) -> tuple[PadimModel, str] | None:
    """``update`` / ``export`` / ``evaluate --model`` NAME[@VERSION]: the library version
    MODEL names, loaded on ``device`` (default ``args.device``), when MODEL is not a file
    and the workspace has it (else None: MODEL is a file). A folder is never a model file:
    a folder named like a library model does not hide the model."""
    from .store.errors import NotFoundError
    from .store.store import resolve_data_dir

    path = Path(args.model).expanduser()
    folder = path.is_dir()
    if path.exists() and not folder:
        return None
    v = None
    if resolve_data_dir(args.data_dir).is_dir() or os.environ.get(DATABASE_URL_ENV):
        with open_store(args) as store:
            try:
                v = _version(store, args.model)
            except NotFoundError:
                name, version = parse_ref(args.model)
                if version is not None and name in {e.name for e in store.library.models()}:
                    raise             # NAME is in the library, that version is not: say so
            if v is not None:
                model = store.library.load(v, device=device or args.device)
                _say(f"model {v.ref} from the library in {store.data_dir}")
    if v is None:
        if folder:
            raise InvalidInputError(args.model, "is a folder, not a model file (and the "
                                                "library has no model of that name)")
        return None
    setattr(args, UPDATE_BASE, v)
    return model, v.ref


def check_predict_args(args: argparse.Namespace) -> list[str]:
    """The inputs, once MODEL (positional) and --model are sorted out."""
    if args.library_model is None:
        if args.record:
            raise _usage("--record needs --model NAME (a library model)")
        if not args.inputs:
            raise _usage("give a MODEL file and images, or --model NAME and images")
        return list(args.inputs)
    return ([args.model] if args.model else []) + list(args.inputs or [])


class Recorder:
    """``predict --record``: history rows, one transaction per batch."""

    def __init__(self, store: Store, version: ModelVersion, operator: str) -> None:
        self.store, self.version, self.operator = store, version, operator
        self.batch = new_batch()                    # every row of this predict run
        self.pending: list[NewInspection] = []
        self.count = 0

    def add(self, name: str, path: Path, score: float, image: np.ndarray,
            overlay_png: bytes, ng: bool) -> None:
        """Queue one row; ``ng`` is the verdict predict printed (the model's rule: by score,
        or by a defect region's area), so the history never disagrees with results.csv."""
        image_thr, pixel_thr = self.version.thresholds
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            digest = ""
        self.pending.append(NewInspection(
            file_name=name, score=float(score), model_name=self.version.name,
            model_version=self.version.version, version_id=self.version.id,
            image_threshold=image_thr, pixel_threshold=pixel_thr, image_sha256=digest,
            operator=self.operator, image=image, overlay=overlay_png,
            verdict="NG" if ng else "OK", batch=self.batch))

    def flush(self) -> None:
        if self.pending:
            self.store.history.record(self.pending)
            self.count += len(self.pending)
            self.pending = []


def library_model(args: argparse.Namespace) -> tuple[PadimModel, Recorder | None, Store]:
    """``predict --model NAME[@VERSION]``: the model (with the version's operating thresholds),
    a recorder when ``--record`` is given, and the open store (the caller closes it)."""
    store = open_store(args)
    try:
        v, model = _load_version(store, args.library_model, args.device)
        return model, (Recorder(store, v, args.operator) if args.record else None), store
    except BaseException:
        store.close()
        raise


def _load_version(store: Store, ref: str, device: str) -> tuple[ModelVersion, PadimModel]:
    """Version ``ref`` (NAME or NAME@VERSION) loaded, its operating thresholds applied."""
    v = _version(store, ref)
    model = store.library.load(v, device=device)
    image, pixel = v.thresholds
    model.state_.image_threshold, model.state_.pixel_threshold = image, pixel
    _say(f"model {v.ref}: thresholds image {image:.4g}, pixel {pixel:.4g}"
         + (" (saved on the version)" if v.operating_image_threshold is not None else ""))
    return v, model


def add_serve_options(srv: argparse.ArgumentParser) -> None:
    g = srv.add_argument_group("library")
    g.add_argument("--model", dest="library_model", metavar="NAME[@VERSION]",
                   help="serve this library model (its default or newest version, or VERSION) "
                        "instead of a MODEL file; its saved operating thresholds apply")
    g.add_argument("--follow", action="store_true",
                   help="with --model NAME: keep serving NAME's default (else newest) version "
                        "as the library changes (a new version, another default, thresholds "
                        "saved on the Models page), without a restart")
    g.add_argument("--follow-seconds", type=float, default=DEFAULT_FOLLOW_SECONDS,
                   metavar="S", help="how often --follow looks at the library "
                                     f"(default {DEFAULT_FOLLOW_SECONDS:g})")
    add_data_dir(g)


class LibraryPoll:
    """``serve --follow``: what the library now chooses for the model followed, as a snapshot
    to serve, or None while it is what is served. The model is followed by the ids of its
    versions, not by its name: a rename keeps them, so each look finds the model's name now
    through the version served (or another version seen at the last look), logs a rename
    once and goes on following. Opens its own store on first use (in the follower's thread)
    and keeps it, so file checks are cached."""

    def __init__(self, args: argparse.Namespace, name: str) -> None:
        self.args, self.name = args, name
        self.log = _say        # where a rename is said
        self.store: Store | None = None
        #: id -> created_at of the model's versions at the last look (created_at: an id the
        #: database hands out again after a delete is not taken for the model's).
        self.seen: dict[int, datetime] = {}

    def _name_now(self, served: Served) -> str:
        assert self.store is not None
        ids = dict.fromkeys([*([] if served.version_id is None else [served.version_id]),
                             *self.seen])
        for version_id in ids:
            try:
                v = self.store.library.by_id(version_id)
            except InvalidInputError:       # deleted: another version may still say
                continue
            if self.seen.get(version_id, v.created_at) != v.created_at:
                continue                    # the id now belongs to another version
            if v.name != self.name:
                self.log(f"{self.name} was renamed to {v.name}; following it")
                self.name = v.name
            break
        return self.name     # no version of it left: by the name (the error names it)

    def __call__(self, served: Served) -> Served | None:
        if self.store is None:
            self.store = open_store(self.args)
        entry = self.store.library.get(self._name_now(served))
        v = entry.current
        if v is None:
            raise InvalidInputError(entry.name, "has no versions")
        self.seen = {x.id: x.created_at for x in entry.versions}
        if v.id == served.version_id:
            now = served
            if v.ref != now.ref:      # renamed: answers name the version as it is now
                now = replace(now, ref=v.ref, identity={**now.identity, "version": v.ref})
            if v.thresholds != (now.image_threshold, now.pixel_threshold):
                now = replace(now, image_threshold=v.thresholds[0],
                              pixel_threshold=v.thresholds[1])
            return None if now is served else now
        model = self.store.library.load(v, device=self.args.device)
        return Served.of(model, v.ref, v.id, v.thresholds)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


def served_model(args: argparse.Namespace) -> tuple[LiveModel, str]:
    """``serve``: the model from the MODEL file or from ``--model NAME[@VERSION]`` (exactly
    one of them; ``--follow`` only with NAME), and what to call it in the log."""
    from .cli import _load_model

    if (args.model is None) == (args.library_model is None):
        raise _usage("give a MODEL file or --model NAME[@VERSION] (one of them)")
    if args.follow and (args.library_model is None or parse_ref(args.library_model)[1]):
        raise _usage("--follow follows the library's choice for a name: give --model NAME "
                     "without @VERSION")
    if not args.follow_seconds > 0:
        raise _usage(f"--follow-seconds: must be > 0, got {args.follow_seconds}")
    if args.library_model is None:
        return LiveModel(Served.of(_load_model(args.model, args.device))), str(args.model)
    with open_store(args) as store:
        v, model = _load_version(store, args.library_model, args.device)
    _ = model.extractor      # a missing backbone fails here, before the server starts
    poll = LibraryPoll(args, v.name) if args.follow else None
    live = LiveModel(Served.of(model, v.ref, v.id), poll, args.follow_seconds, log=_say)
    follows = f", following {v.name} (its default version, else the newest)" if args.follow \
        else ""
    return live, f"{v.ref} from {store.data_dir}{follows}"


__all__ = ["COMMANDS", "LibraryPoll", "Recorder", "add_data_dir", "add_fit_options", "add_parsers",
           "add_predict_options", "add_serve_options", "check_fit_args", "check_predict_args",
           "library_model", "model_by_ref", "open_store", "parse_since", "run", "save_fitted",
           "save_updated", "served_model"]
