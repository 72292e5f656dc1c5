"""Child processes for the store's fault and concurrency tests (``test_store.py``).

    python tests/store_worker.py SCENARIO DATA_DIR MODEL_FILE [ARG]

The database URL comes from ``PADIM_DATABASE_URL`` (unset: SQLite in DATA_DIR). Each
scenario prints one JSON line with what it saw; the tests assert on it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

from padim_core.store import NewInspection, Store, StoreError


def _hang(marker: Path) -> None:
    marker.write_text("here")
    time.sleep(600)


def kill_before_publish(store: Store, model_file: Path, marker: Path) -> None:
    """Stops (to be SIGKILLed) after the temporary file is written and fsynced."""
    from padim_core.store import blobs

    blobs.BlobStore.publish = lambda self, sha, staged: _hang(marker)  # type: ignore[method-assign]
    store.library.import_file(model_file, "half")


def kill_before_commit(store: Store, model_file: Path, marker: Path) -> None:
    """Stops (to be SIGKILLed) after the file is in place, before its row commits."""
    from padim_core.store import library

    original = library._version_row

    def hang(*args, **kwargs):  # type: ignore[no-untyped-def]
        original(*args, **kwargs)
        _hang(marker)

    library._version_row = hang
    store.library.import_file(model_file, "half")


def writer(store: Store, model_file: Path, tag: str) -> dict:
    """Saves one version and records 20 rows (each its own transaction), deciding on some."""
    v = store.library.import_file(model_file, "shared")
    ids = []
    for i in range(20):
        ids += store.history.record([NewInspection(
            file_name=f"{tag}-{i}.png", score=float(i), model_name=v.name,
            model_version=v.version, version_id=v.id, image_threshold=10.0,
            pixel_threshold=5.0, operator=tag)])
    for i in ids[::4]:
        store.history.decide(i, "false_alarm", comment=tag, operator=tag)
    return {"version": v.version, "rows": len(ids)}


def read_only(store: Store, model_file: Path, _: str) -> dict:
    """Saves v1 and a row, makes the data dir read-only, then tries to save again."""
    v1 = store.library.import_file(model_file, "ro")
    store.history.record([NewInspection("a.png", 1.0, "ro", 1, 2.0, 1.0)])
    for path in [store.data_dir, *store.data_dir.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)
    out: dict = {}
    try:
        store.library.import_file(model_file, "ro")
        out["save"] = "saved"
    except StoreError as err:
        out["save"] = str(err)
    out["versions"] = [v.version for v in store.library.get("ro").versions]
    out["loads"] = store.library.load(v1, device="cpu").card()["d"]
    out["rows"] = store.history.count()
    store.close()
    for path in store.data_dir.rglob("*"):
        if path.is_file():
            path.chmod(0o444)
    try:   # the next start, on the now wholly read-only workspace
        with Store.open(store.data_dir) as again:
            out["reopen"] = f"opened, {again.history.count()} row(s)"
    except StoreError as err:
        out["reopen"] = str(err)
    return out


def read_only_at_start(store: Store, model_file: Path, _: str) -> dict:
    """A workspace closed cleanly, then made read-only, opened again."""
    store.history.record([NewInspection("a.png", 1.0, "ro", 1, 2.0, 1.0)])
    store.close()
    for path in [store.data_dir, *store.data_dir.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        with Store.open(store.data_dir) as again:
            return {"reopen": f"opened, {again.history.count()} row(s)"}
    except StoreError as err:
        return {"reopen": str(err)}


def disk_full(store: Store, model_file: Path, _: str) -> dict:
    """Saves v1, then limits file size below the model's (writes fail with EFBIG, the way a
    full disk fails them with ENOSPC), tries to save, lifts the limit and checks the rest."""
    v1 = store.library.import_file(model_file, "full")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (model_file.stat().st_size // 2, hard))
    out: dict = {}
    try:
        store.library.save(store.library.load(v1, device="cpu"), "full", note="second")
        out["save"] = "saved"
    except StoreError as err:
        out["save"] = str(err)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    out["versions"] = [v.version for v in store.library.get("full").versions]
    out["temporary"] = sorted(p.name for p in (store.data_dir / "blobs" / "tmp").iterdir())
    out["loads"] = store.library.load(v1, device="cpu").card()["d"]
    store.history.record([NewInspection("b.png", 1.0, "full", 1, 2.0, 1.0)])
    out["rows"] = store.history.count()
    return out


SCENARIOS = {"kill-before-publish": kill_before_publish, "kill-before-commit": kill_before_commit,
             "writer": writer, "read-only": read_only,
             "read-only-at-start": read_only_at_start, "disk-full": disk_full}


def main() -> None:
    scenario, data_dir, model_file = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    arg = sys.argv[4] if len(sys.argv) > 4 else ""
    if scenario.startswith("kill"):
        arg = Path(arg)
    with Store.open(data_dir) as store:
        result = SCENARIOS[scenario](store, model_file, arg)
    print(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
