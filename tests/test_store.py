"""The workspace store (``padim_core.store``) against SQLite *and* a real PostgreSQL server.

Why: the library and the history are what survives a reload, a restart and a second
inspector; a lost row, a half-written model file or a "database is locked" there loses
people's work. Every test here runs on both backends (``backend`` fixture); the PostgreSQL
one is a throw-away cluster started once per run (``postgres_server.py``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from padim_core import PadimModel
from padim_core.demo import make_demo_set
from padim_core.errors import InvalidInputError, ModelFileError
from padim_core.store import (
    DAMAGED,
    MISSING,
    OK,
    BlobUnavailableError,
    Filters,
    NewInspection,
    NotFoundError,
    SchemaTooNewError,
    Store,
    StoreError,
)
from padim_core.store.database import current_revision, head_revision
from padim_core.store.tables import MAX_NAME_CHARS

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "store_worker.py"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    demo = make_demo_set(tmp_path_factory.mktemp("store") / "demo", n_train=6, n_test_good=2,
                         n_test_defect=2, size=128)
    return sorted((demo / "train" / "good").glob("*.png"))


@pytest.fixture(scope="module")
def model(images: list[Path]) -> PadimModel:
    with pytest.warns(UserWarning):   # 6 images for d=16: fits, and says so
        return PadimModel(d=16, image_size=64, crop=64, device="cpu").fit(images)


@pytest.fixture(scope="module")
def model_file(model: PadimModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("file") / "small.safetensors"
    model.save(path)
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o644)
    return path


def variant(model: PadimModel, k: int) -> PadimModel:
    """The same model with another image threshold: different bytes, same shapes."""
    other = PadimModel.from_bytes(model.to_bytes(), device="cpu")
    other.state_.image_threshold = model.image_threshold_ + k
    return other


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str | None]:
    """(data dir, database URL or None for SQLite in the data dir)."""
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        return data_dir, None
    from postgres_server import fresh_database

    return data_dir, fresh_database(request.getfixturevalue("postgres_admin_url"))


@pytest.fixture
def store(backend: tuple[Path, str | None]) -> Store:
    s = Store.open(*backend)
    yield s
    s.close()


def _env(url: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PADIM_DATABASE_URL", None)
    if url:
        env["PADIM_DATABASE_URL"] = url
    return env


def _inspection(name: str = "m", version: int | None = 1, score: float = 1.0,
                **kw: object) -> NewInspection:
    return NewInspection(file_name=kw.pop("file_name", "part.png"), score=score,
                         model_name=name, model_version=version, image_threshold=2.0,
                         pixel_threshold=1.5, **kw)


# --------------------------------------------------------------------------- library


def test_the_fingerprint_of_a_fit_leaves_out_what_it_skipped(images: list[Path],
                                                             tmp_path: Path) -> None:
    """The same good images give the same fingerprint with or without junk beside them,
    as paths (the CLI) or bytes (app uploads)."""
    from padim_core.store import fitted_fingerprint, training_fingerprint

    junk = tmp_path / "notes.txt"
    junk.write_text("shift B")
    mixed = [junk, *images]
    want = training_fingerprint(images)
    cfg = dict(backbone="resnet18", weights="random", d=8, image_size=32, crop=32,
               device="cpu")
    from_files = PadimModel(**cfg).fit(mixed)
    assert [n for n, _ in from_files.skipped_] == ["notes.txt"]
    assert fitted_fingerprint(from_files.train_sha256_) == want
    uploads = PadimModel(**cfg).fit([p.read_bytes() for p in reversed(images)])
    assert fitted_fingerprint(uploads.train_sha256_) == want
    assert training_fingerprint(mixed) != want


def test_save_lists_the_card_and_loads_the_same_model(store: Store, model: PadimModel,
                                                      images: list[Path]) -> None:
    v = store.library.save(model, "transistor line 3", note="first try",
                           training_fingerprint="ab" * 32)
    assert (v.name, v.version, v.status) == ("transistor line 3", 1, OK)
    [entry] = store.library.models(verify=True)
    listed = entry.versions[0]
    card = model.card()
    assert (listed.backbone, listed.d, listed.image_size, listed.crop) == \
        (card["backbone"], 16, 64, 64)
    assert listed.n_train_images == 6 and listed.note == "first try"
    assert listed.training_fingerprint == "ab" * 32 and listed.source == "fit"
    assert listed.image_threshold == pytest.approx(card["image_threshold"])
    assert listed.created_at.tzinfo is not None and listed.status == OK
    data = store.library.read_bytes(listed)
    assert hashlib.sha256(data).hexdigest() == listed.sha256 == v.sha256
    assert listed.size_bytes == len(data) == len(model.to_bytes())    # streamed in pieces
    assert store.blobs.path(v.sha256).is_file()
    again = store.library.load(store.library.resolve("transistor line 3"), device="cpu")
    np.testing.assert_allclose(again.predict(images[:2]).scores,
                               model.predict(images[:2]).scores, rtol=1e-6)


def test_versions_count_up_are_never_reused_and_default_is_chosen(
        store: Store, model: PadimModel) -> None:
    lib = store.library
    for k in range(3):
        lib.save(variant(model, k), "m")
    assert [v.version for v in lib.get("m").versions] == [1, 2, 3]
    assert lib.resolve("m").version == 3            # no default: the newest
    lib.set_default("m", 2)
    assert lib.resolve("m").version == 2 and lib.resolve("m@1").version == 1
    assert lib.get("m").current.is_default
    lib.delete("m", 3)
    lib.save(variant(model, 7), "m")
    assert [v.version for v in lib.get("m").versions] == [1, 2, 4]
    lib.delete("m", 2)                               # the default goes: the newest again
    assert lib.get("m").default_version is None and lib.resolve("m").version == 4
    with pytest.raises(NotFoundError, match=r"m@9: no such version \(versions: 1, 4\)"):
        lib.resolve("m@9")
    with pytest.raises(NotFoundError, match="nope: no model of that name"):
        lib.resolve("nope")
    with pytest.raises(NotFoundError):
        lib.set_default("m", 2)


def test_same_bytes_share_one_file_until_the_last_version_goes(store: Store,
                                                               model_file: Path) -> None:
    a = store.library.import_file(model_file, "a")
    b = store.library.import_file(model_file, "b")
    assert a.sha256 == b.sha256 and len(store.blobs.files()) == 1
    store.library.delete("a")
    assert store.blobs.path(b.sha256).is_file()
    assert store.library.read_bytes(store.library.resolve("b"))
    store.library.delete("b")
    assert store.blobs.files() == {} and store.library.models() == []


def test_rename_moves_history_and_refuses_a_taken_name(store: Store, model: PadimModel) -> None:
    v = store.library.save(model, "old")
    store.library.save(variant(model, 1), "other")
    [row] = store.history.record([_inspection("old", 1, version_id=v.id)])
    store.library.rename("old", "new")
    assert store.history.get(row).model_name == "new"
    assert [m.name for m in store.library.models()] == ["new", "other"]
    with pytest.raises(InvalidInputError, match="other: a model of that name already exists"):
        store.library.rename("new", "other")
    with pytest.raises(NotFoundError):
        store.library.rename("old", "x")


def test_deleting_a_version_keeps_its_history_readable(store: Store, model: PadimModel) -> None:
    v = store.library.save(model, "gone")
    [row] = store.history.record([_inspection("gone", v.version, version_id=v.id, score=3.0)])
    assert store.library.delete("gone") == 1
    kept = store.history.get(row)
    assert (kept.model_name, kept.model_version, kept.version_id, kept.verdict) == \
        ("gone", 1, None, "NG")
    assert store.blobs.files() == {}


def test_import_validates_the_file_and_adds_nothing_when_bad(store: Store, model_file: Path,
                                                             tmp_path: Path) -> None:
    v = store.library.import_file(model_file, "imported")
    assert v.source == "file" and v.sha256 == hashlib.sha256(model_file.read_bytes()).hexdigest()
    u = store.library.import_bytes(model_file.read_bytes(), "uploaded", file_name="up.safetensors")
    assert u.source == "upload"
    assert store.library.load(u, device="cpu").card()["d"] == 16
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="bad.safetensors"):
        store.library.import_file(bad, "bad")
    with pytest.raises(ModelFileError, match="upload.safetensors"):
        store.library.import_bytes(model_file.read_bytes()[:-100], "bad",
                                   file_name="upload.safetensors")
    assert [m.name for m in store.library.models()] == ["imported", "uploaded"]
    assert list((store.data_dir / "blobs" / "tmp").iterdir()) == []


@pytest.mark.parametrize("name", [
    "'; DROP TABLE models; --", 'quote " and \' and `tick`', "🙂 transistor ✓",
    "Robert'); DELETE FROM model_versions;--", "name@3", "x" * MAX_NAME_CHARS, "ﬁ ligature",
    "100%_like\\escape"])
def test_odd_names_are_stored_literally(store: Store, model: PadimModel, name: str) -> None:
    v = store.library.save(model, name)
    assert v.name == name
    assert [m.name for m in store.library.models()] == [name]
    assert store.library.resolve(name).version == 1
    assert store.library.resolve(f"{name}@1").name == name
    store.history.record([_inspection(name, 1, version_id=v.id)])
    assert store.history.find(Filters(model_name=name))[0].model_name == name
    new_name = (name + " b")[-MAX_NAME_CHARS:]
    store.library.rename(name, new_name)
    assert store.library.get(new_name).versions[0].version == 1


@pytest.mark.parametrize(("name", "problem"), [
    ("", "is empty"), ("   ", "is empty"),
    ("x" * 500, f"has 500 characters; at most {MAX_NAME_CHARS}"),
    ("a\nb", "control"), ("nul\x00", "control"), (None, "must be text")])
def test_bad_names_are_refused_with_a_message(store: Store, model: PadimModel, name: object,
                                              problem: str) -> None:
    with pytest.raises(InvalidInputError, match=problem) as info:
        store.library.save(model, name)   # type: ignore[arg-type]
    assert str(info.value).startswith("model name: ")
    assert store.library.models() == [] and store.blobs.files() == {}


def test_operating_thresholds_are_saved_on_a_version(store: Store, model: PadimModel) -> None:
    v = store.library.save(model, "thr")
    assert v.thresholds == (v.image_threshold, v.pixel_threshold)
    v2 = store.library.set_thresholds(v, 12.5, 7.25)
    assert v2.thresholds == (12.5, 7.25)
    assert store.library.resolve("thr").operating_image_threshold == 12.5
    for bad in (-1.0, 0.0, math.nan, math.inf):
        with pytest.raises(InvalidInputError, match="image threshold: must be a positive"):
            store.library.set_thresholds(v, bad, 1.0)
    assert store.library.set_thresholds(v, None, None).thresholds == \
        (v.image_threshold, v.pixel_threshold)
    assert store.library.set_note(v, "re-check after the lamp change").note == \
        store.library.resolve("thr").note == "re-check after the lamp change"


# --------------------------------------------------------------------------- history


def _jpeg_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as pic:
        assert pic.format == "JPEG"
        return pic.size


def test_history_records_filters_decides_and_exports(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    old = datetime.now(UTC) - timedelta(days=10)
    ids = store.history.record([
        _inspection("m", 1, 1.0, file_name="good.png", inspected_at=old),
        _inspection("m", 2, 5.0, file_name="=HYPERLINK(\"x\").png",
                    image=rng.integers(0, 255, (600, 400, 3), dtype=np.uint8),
                    overlay=rng.integers(0, 255, (600, 400, 3), dtype=np.uint8),
                    image_sha256="c" * 64, operator="ann"),
        _inspection("other", None, 2.0, file_name="edge.png")])
    assert store.history.count() == 3
    newest = store.history.find()
    assert [r.id for r in newest] == ids[::-1]
    good, bad, edge = (store.history.get(i) for i in ids)
    assert (good.verdict, bad.verdict, edge.verdict) == ("OK", "NG", "NG")   # 2.0 >= 2.0
    assert bad.normalized_score == pytest.approx(2.5) and bad.operator == "ann"
    image, overlay = store.history.thumbnails(bad.id)
    assert _jpeg_size(image) == (171, 256) and _jpeg_size(overlay) == (171, 256)
    assert store.history.thumbnails(good.id) == (None, None)
    recent = Filters(since=datetime.now(UTC) - timedelta(days=1))
    assert [r.id for r in store.history.find(recent)] == ids[:0:-1]
    assert [r.id for r in store.history.find(Filters(model_name="m", verdict="NG"))] == [ids[1]]
    assert store.history.count(Filters(model_name="m", model_version=1)) == 1
    decided = store.history.decide(bad.id, "confirmed_defect", "scratch, 2 mm", "ann")
    assert decided.decision_label == "confirmed defect" and decided.decided_at is not None
    store.history.decide(good.id, "missed_defect", operator="bob")
    assert [r.id for r in store.history.find(Filters(decision="none"))] == [ids[2]]
    assert [r.id for r in store.history.find(Filters(decision="missed_defect"))] == [ids[0]]
    with pytest.raises(InvalidInputError, match="decision: must be one of"):
        store.history.decide(bad.id, "maybe")
    with pytest.raises(NotFoundError):
        store.history.decide(10**9, "false_alarm")
    cleared = store.history.decide(good.id, None)
    assert cleared.decision is None and cleared.decided_by == ""

    out = tmp_path / "history.csv"
    assert store.history.export_csv(out) == 3
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [int(r["id"]) for r in rows] == ids
    assert rows[1]["file_name"] == "'=HYPERLINK(\"x\").png"      # not run as a formula
    assert rows[1]["decision"] == "confirmed defect" and rows[1]["comment"] == "scratch, 2 mm"
    assert rows[1]["verdict"] == "NG" and rows[2]["model_version"] == ""
    assert store.history.export_csv(out, recent) == 2


def test_thumbnails_over_the_cap_go_oldest_first_rows_stay(backend: tuple[Path, str | None],
                                                           ) -> None:
    rng = np.random.default_rng(1)
    with Store.open(*backend, thumbnail_cap_bytes=10**9) as store:
        pictures = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
        ids = [store.history.record([_inspection(image=p)])[0] for p in pictures]
        sizes = [len(store.history.thumbnails(i)[0]) for i in ids]
        # Room for the newest three and one more of the last one's size:
        store.history.thumbnail_cap_bytes = sum(sizes[-3:]) + sizes[-1]
        [new] = store.history.record([_inspection(image=pictures[-1])])
        kept = [i for i in ids if store.history.thumbnails(i)[0] is not None]
        assert kept == ids[-3:]                                      # oldest went first
        assert store.history.thumbnail_bytes() == sum(sizes[-3:]) + sizes[-1]
        assert store.history.count() == 7
        assert store.history.prune_thumbnails(0) == 4
        assert store.history.thumbnail_bytes() == 0 and store.history.count() == 7


def test_a_score_that_is_not_a_number_is_kept_and_ng(store: Store) -> None:
    [i] = store.history.record([_inspection(score=math.nan)])
    row = store.history.get(i)
    assert math.isnan(row.score) and row.verdict == "NG"
    with pytest.raises(InvalidInputError, match="image threshold"):
        store.history.record([NewInspection("x.png", 1.0, "m", 1, 0.0, 1.0)])


# --------------------------------------------------------------------------- schema


def _engine(backend: tuple[Path, str | None]):  # type: ignore[no-untyped-def]
    data_dir, url = backend
    return create_engine(url or f"sqlite:///{data_dir / 'inspector.db'}")


def test_the_migrations_build_exactly_the_tables_the_code_uses(store: Store,
                                                               backend: tuple) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from padim_core.store.tables import Base

    engine = _engine(backend)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert current_revision(engine) == head_revision() == store.schema_revision
    engine.dispose()


def test_an_older_schema_is_upgraded_with_its_rows(backend: tuple[Path, str | None]) -> None:
    from alembic import command

    from padim_core.store.database import _alembic_config, make_engine

    backend[0].mkdir(parents=True)
    engine = make_engine(backend[1] or f"sqlite:///{backend[0] / 'inspector.db'}")
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
        conn.execute(text(
            "INSERT INTO inspections (inspected_at, image_sha256, file_name, model_name, score,"
            " normalized_score, image_threshold, pixel_threshold, verdict, operator, comment,"
            " decided_by) VALUES ('2026-01-02 03:04:05', 'ab', 'old.png', 'm', 1, 0.5, 2, 1,"
            " 'OK', '', '', '')"))
    assert current_revision(engine) == "0001"
    engine.dispose()
    with Store.open(*backend) as store:
        [row] = store.history.find()
        assert row.file_name == "old.png" and row.inspected_at.year == 2026
    engine = _engine(backend)
    assert current_revision(engine) == head_revision() != "0001"
    engine.dispose()


def test_a_newer_schema_is_refused_and_left_alone(backend: tuple[Path, str | None]) -> None:
    Store.open(*backend).close()
    engine = _engine(backend)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaTooNewError, match="revision '9999' is newer than this program"):
        Store.open(*backend)
    assert current_revision(engine) == "9999"
    engine.dispose()


# --------------------------------------------------------------------------- faults


def test_a_deleted_or_damaged_file_marks_only_its_version(store: Store,
                                                          model: PadimModel) -> None:
    a = store.library.save(variant(model, 1), "a")
    b = store.library.save(variant(model, 2), "b")
    c = store.library.save(variant(model, 3), "c")
    store.history.record([_inspection("a", 1, version_id=a.id)])
    good_b = store.library.read_bytes(b)
    store.blobs.path(a.sha256).unlink()
    raw = bytearray(store.blobs.path(b.sha256).read_bytes())
    raw[-10] ^= 0xFF                   # same size, one byte flipped
    store.blobs.path(b.sha256).write_bytes(bytes(raw))
    status = {m.name: m.versions[0].status for m in store.library.models(verify=True)}
    assert status == {"a": MISSING, "b": DAMAGED, "c": OK}
    assert store.library.resolve("a").status == MISSING
    with pytest.raises(BlobUnavailableError, match=r"a@1: model file missing \("):
        store.library.load(store.library.resolve("a"))
    with pytest.raises(BlobUnavailableError, match=r"b@1: model file damaged"):
        store.library.read_bytes(store.library.resolve("b"))
    assert store.library.load(c, device="cpu").card()["d"] == 16
    assert store.history.count() == 1
    store.library.delete("a")           # a broken version can still be deleted
    fixed = store.library.import_bytes(good_b, "b")   # the same bytes heal the file
    assert store.library.resolve("b@1").status == OK and fixed.sha256 == b.sha256


def _kill_during_save(point: str, data_dir: Path, model_file: Path, url: str | None,
                      marker: Path) -> None:
    """Start a worker that saves and stops at ``point``; SIGKILL it there."""
    proc = subprocess.Popen([sys.executable, str(WORKER), point, str(data_dir),
                             str(model_file), str(marker)], env=_env(url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the worker never reached the kill point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)


@pytest.mark.parametrize("point", ["kill-before-publish", "kill-before-commit"])
def test_sigkill_during_a_save_leaves_no_half_model(backend: tuple[Path, str | None],
                                                    model_file: Path, tmp_path: Path,
                                                    point: str) -> None:
    data_dir, url = backend
    with Store.open(*backend) as store:
        store.library.import_file(model_file, "complete")
    _kill_during_save(point, data_dir, model_file, url, tmp_path / "marker")
    tmp_dir = data_dir / "blobs" / "tmp"
    left = list(tmp_dir.iterdir())
    assert len(left) == (1 if point == "kill-before-publish" else 0)
    for path in left:   # "next start" comes later than the grace for live writers
        os.utime(path, (time.time() - 60, time.time() - 60))
    assert len(list((data_dir / "blobs").glob("??/*.safetensors"))) == 1  # same bytes
    with Store.open(*backend) as store:
        assert [m.name for m in store.library.models()] == ["complete"]
        assert list(tmp_dir.iterdir()) == []
        assert store.library.resolve("complete").status == OK
        store.library.import_file(model_file, "after")
        assert [m.name for m in store.library.models()] == ["after", "complete"]


def test_kill_between_file_and_row_leaves_an_orphan_file_that_is_removed(
        backend: tuple[Path, str | None], model: PadimModel, tmp_path: Path) -> None:
    data_dir, url = backend
    other = tmp_path / "other.safetensors"
    variant(model, 5).save(other)
    _kill_during_save("kill-before-commit", data_dir, other, url, tmp_path / "marker")
    assert len(list((data_dir / "blobs").glob("??/*.safetensors"))) == 1
    with Store.open(*backend) as store:
        assert store.library.models() == []
        assert store.blobs.files() == {}


def test_concurrent_threads_all_land(store: Store, model: PadimModel) -> None:
    errors: list[BaseException] = []
    models = [variant(model, k) for k in range(3)]

    def work(t: int) -> None:
        try:
            for k in range(3):
                store.library.save(models[(t + k) % 3], "same name")
                ids = store.history.record([_inspection("same name", None, float(i),
                                                        file_name=f"{t}-{i}.png")
                                            for i in range(5)])
                store.history.decide(ids[0], "false_alarm", operator=f"t{t}")
        except BaseException as err:   # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    assert errors == []
    assert [v.version for v in store.library.get("same name").versions] == list(range(1, 25))
    assert store.history.count() == 8 * 3 * 5
    assert store.history.count(Filters(decision="false_alarm")) == 8 * 3
    versions = store.library.get("same name").versions
    assert set(store.blobs.files()) == {v.sha256 for v in versions}


def test_concurrent_processes_all_land(backend: tuple[Path, str | None], model_file: Path,
                                       ) -> None:
    data_dir, url = backend
    Store.open(*backend).close()
    procs = [subprocess.Popen([sys.executable, str(WORKER), "writer", str(data_dir),
                               str(model_file), f"p{i}"], env=_env(url),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
        assert b"database is locked" not in err
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert sorted(r["version"] for r in results) == [1, 2, 3, 4]
    with Store.open(*backend) as store:
        assert store.history.count() == 4 * 20
        assert store.history.count(Filters(decision="false_alarm")) == 4 * 5
        assert {r.operator for r in store.history.find()} == {"p0", "p1", "p2", "p3"}


#: Under root, permissions bind only without these capabilities (util-linux ``setpriv``).
DROP_ROOT_OVERRIDES = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner",
                       "--"]


def _run_worker(scenario: str, data_dir: Path, model_file: Path, url: str | None,
                as_plain_user: bool = False) -> dict:
    prefix = DROP_ROOT_OVERRIDES if as_plain_user and os.geteuid() == 0 else []
    proc = subprocess.run([*prefix, sys.executable, str(WORKER), scenario, str(data_dir),
                           str(model_file)], env=_env(url), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_read_only_data_dir_refuses_the_save_and_keeps_the_rest(
        backend: tuple[Path, str | None], model_file: Path) -> None:
    """Root ignores permissions, so under root the scenario runs without the capabilities
    that let it."""
    base = Path(tempfile.mkdtemp(prefix="padim-ro-"))
    data_dir = base / "data"
    try:
        out = _run_worker("read-only", data_dir, model_file, backend[1], as_plain_user=True)
    finally:
        for path in [data_dir, *data_dir.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
    assert out["save"].startswith("cannot ") and "the data dir is not writable" in out["save"]
    assert out["versions"] == [1] and out["loads"] == 16 and out["rows"] == 1
    assert out["reopen"] == "opened, 1 row(s)"   # still readable after a restart


def test_a_read_only_workspace_at_start_is_one_clear_error_or_readable(
        backend: tuple[Path, str | None]) -> None:
    base = Path(tempfile.mkdtemp(prefix="padim-ro-"))
    try:
        out = _run_worker("read-only-at-start", base / "data", Path("unused"), backend[1],
                          as_plain_user=True)
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(base, ignore_errors=True)
    if backend[1] is None:   # SQLite cannot even set up its journal in a read-only folder
        assert out["reopen"].startswith("database sqlite:///"), out
        assert "not writable" in out["reopen"], out
    else:                    # PostgreSQL: only the model files live in the data dir
        assert out["reopen"] == "opened, 1 row(s)"


def test_a_full_disk_refuses_the_save_and_keeps_the_rest(backend: tuple[Path, str | None],
                                                         model_file: Path) -> None:
    out = _run_worker("disk-full", backend[0], model_file, backend[1])
    assert "cannot write" in out["save"] and "full" in out["save"], out
    assert out["versions"] == [1] and out["temporary"] == []
    assert out["loads"] == 16 and out["rows"] == 1


def test_an_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"database postgresql\+psycopg://u:\*\*\*@127.0.0.1"):
        Store.open(tmp_path, "postgresql+psycopg://u:secret@127.0.0.1:1/x")
    with pytest.raises(StoreError, match="database URL"):
        Store.open(tmp_path, "not a url")


def test_a_long_device_description_is_cut_to_its_column(store: Store, model: PadimModel) -> None:
    """A cluster fit's card names its scheduler; a long host name must not make PostgreSQL
    refuse the version (the column holds 64 characters; SQLite never checked)."""
    from dataclasses import replace

    other = PadimModel.from_bytes(model.to_bytes(), device="cpu")
    other.state_ = replace(other.state_, device="Dask: 9 worker(s), 99 thread(s), "
                                                "tcp://inspection-cluster.plant-3.example.com:8786")
    v = store.library.save(other, "plates")
    assert v.device == other.card()["device"][:64] and len(v.device) == 64


def test_rows_recorded_by_name_follow_a_rename(store: Store, model: PadimModel) -> None:
    """The app recorded rows by model name and number without the version's id; a rename
    then left them under the old name (History, Evaluate and the reloaded Inspect lost
    them). Rows now get the id when recorded, and a rename carries older rows along, except
    those older than the version (an earlier model of that name)."""
    from datetime import timedelta

    from padim_core.store.tables import InspectionRow, utcnow

    v = store.library.save(model, "demo")
    [new_id] = store.history.record([NewInspection("new.png", 1.0, "demo", 1, 2.0, 1.0)])
    assert store.history.get(new_id).version_id == v.id
    with store._db.writing() as s:           # as recorded before: no version id
        for name, when in (("legacy.png", utcnow()),
                           ("earlier-model.png", v.created_at - timedelta(days=1))):
            s.add(InspectionRow(inspected_at=when, file_name=name, model_name="demo",
                                model_version=1, version_id=None, score=1.0,
                                normalized_score=0.5, image_threshold=2.0,
                                pixel_threshold=1.0, verdict="OK", operator="",
                                comment="", decided_by=""))
    store.library.rename("demo", "plates line 1", by="ann")
    names = {r.file_name: (r.model_name, r.version_id) for r in store.history.find()}
    assert names == {"new.png": ("plates line 1", v.id), "legacy.png": ("plates line 1", v.id),
                     "earlier-model.png": ("demo", None)}


def test_a_name_whose_versions_were_all_deleted_does_not_reuse_their_numbers(
        store: Store, model: PadimModel) -> None:
    """Deleting every version dropped the name's counter: the next file became small@1
    again, and rows recorded with the first small@1 then meant another file."""
    store.library.save(model, "small")
    store.history.record([NewInspection("a.png", 1.0, "small", 1, 2.0, 1.0)])
    store.library.delete("small")
    again = store.library.save(model, "small")
    assert again.version == 2 and store.library.by_id(again.id).ref == "small@2"
    store.library.rename("small", "big")
    assert store.library.by_id(again.id).ref == "big@2"        # an id outlives a rename
    with pytest.raises(NotFoundError, match="no longer in the library"):
        store.library.by_id(again.id + 1000)


def test_a_new_workspace_is_its_owners_only(tmp_path: Path, model: PadimModel) -> None:
    """The security review: the database (password hashes, history images), its WAL and
    the model files were 0644 in a 0755 folder, readable by every local account."""
    import stat

    root = tmp_path / "private"
    with Store.open(root) as store:
        store.library.save(model, "plates")
        store.users.add("ann", "correct horse battery", "admin")
        blob = store.library.path(store.library.resolve("plates"))
        for path in (root, root / "blobs", root / "inspector.db", root / "inspector.db-wal",
                     blob, blob.parent):
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
