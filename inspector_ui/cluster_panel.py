"""The Train page's Dask cluster: when ``PADIM_DASK_SCHEDULER`` names a scheduler, show its
workers and fit there, with a progress bar that moves as shards finish (docs/cluster.md).

The client is opened once per server process and address (like the backbone). Workers read
uploaded images from the bytes sent with each shard; a folder on the server is sent as paths,
so the workers must see it at the same place, and only folders under
``PADIM_DASK_DATA_ROOT`` are offered (a browser user must not choose any path of the server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from padim_core.errors import InvalidInputError

from . import actions, panels, uploads
from .text import md
from .uploads import ImageBatch
from .widgets import attempt

if TYPE_CHECKING:
    from distributed import Client

    from .actions import FitSettings

SCHEDULER_ENV = "PADIM_DASK_SCHEDULER"
"""The scheduler's address (``tcp://host:8786``); unset: no cluster on the Train page."""
DATA_ROOT_ENV = "PADIM_DASK_DATA_ROOT"
"""A server folder (seen by every worker at the same path) whose subfolders the page may fit."""

SOURCES = {"upload": "Images uploaded above", "folder": "Folder on the server",
           "demo": "Demo set"}


@dataclass(frozen=True)
class ClusterInfo:
    """What the scheduler reports about its workers."""

    address: str
    workers: pd.DataFrame
    threads: int
    memory_bytes: int


def scheduler_address() -> str | None:
    """The configured scheduler address, or None."""
    return os.environ.get(SCHEDULER_ENV, "").strip() or None


@dataclass(frozen=True)
class _Connection:
    """Holds the client: a Client is awaitable, which st.cache_resource refuses to keep."""

    client: Client


def _close(connection: _Connection) -> None:
    connection.client.close()


@st.cache_resource(show_spinner="Connecting to the Dask scheduler…", on_release=_close)
def _connection(address: str) -> _Connection:
    from padim_core import distributed

    return _Connection(distributed.open_client(address))


def cluster_info(address: str) -> tuple[Client, ClusterInfo]:
    """The server's client of ``address`` and its workers now. A scheduler that went away
    is one InvalidInputError; the next call connects again."""
    client = _connection(address).client
    try:
        info = client.scheduler_info(n_workers=-1)
    except (OSError, TimeoutError) as err:
        _connection.clear()
        raise InvalidInputError(address, f"the Dask scheduler does not answer "
                                         f"({type(err).__name__})") from None
    if client.status != "running" or not info:
        # A client that lost its scheduler closes itself after a few seconds and then
        # answers {} without raising: drop it, so the next visit connects again.
        _connection.clear()
        raise InvalidInputError(address, "the Dask scheduler has gone away (the connection "
                                         f"is {client.status}); the next visit tries again")
    rows = [{"worker": str(w.get("name", addr)), "address": addr,
             "threads": int(w.get("nthreads", 0)),
             "memory limit (GB)": round(float(w.get("memory_limit") or 0) / 1e9, 1),
             "memory used (GB)": round(float(w.get("metrics", {}).get("memory", 0)) / 1e9, 2)}
            for addr, w in sorted(info.get("workers", {}).items())]
    workers = pd.DataFrame(rows, columns=["worker", "address", "threads", "memory limit (GB)",
                                          "memory used (GB)"])
    if (workers["worker"] == workers["address"]).all():   # `dask worker --nworkers N` names
        workers = workers.drop(columns="worker")
    return client, ClusterInfo(address, workers, int(workers["threads"].sum()),
                               int(sum(float(w.get("memory_limit") or 0)
                                       for w in info.get("workers", {}).values())))


def data_root() -> Path | None:
    """The folder under which server-side folders may be fitted, or None."""
    root = os.environ.get(DATA_ROOT_ENV, "").strip()
    return Path(root).expanduser().resolve() if root else None


def folder_batch(root: Path, relative: str) -> ImageBatch:
    """The normal images of ``root / relative`` (a folder of images or an MVTec category), as
    paths; a folder outside ``root`` is refused."""
    from padim_core.datasets import training_images

    folder = (root / relative.strip()).resolve()
    if not folder.is_relative_to(root):
        raise InvalidInputError(relative, f"is outside {root}")
    batch = ImageBatch(label=folder.name or str(folder))
    for path in training_images(folder):
        batch.add(path.relative_to(folder).as_posix(), path)
    return batch


def cluster_section(slot_key: str, settings: FitSettings | None, save_to_library: bool) -> None:
    """The cluster's workers and "Fit on the cluster" (the training panel's settings and
    library name); nothing when no scheduler is configured."""
    address = scheduler_address()
    if address is None:
        return
    with st.container(border=True):
        st.subheader("Dask cluster")
        found = attempt(cluster_info, address)
        if found is None:
            st.caption(f"Set by {SCHEDULER_ENV}. Training on this server (above) still works.")
            return
        client, info = found
        m = st.columns(3)
        m[0].metric("Workers", len(info.workers))
        m[1].metric("Threads", info.threads)
        m[2].metric("Memory", f"{info.memory_bytes / 1e9:.1f} GB")
        st.caption(f"Scheduler {md(address)}")
        st.dataframe(info.workers, hide_index=True, key="cluster_workers")
        _fit_controls(slot_key, settings, save_to_library, client, ready=len(info.workers) > 0)


def _fit_controls(slot_key: str, settings: FitSettings | None, save_to_library: bool,
                  client: Client, ready: bool) -> None:
    prefix = f"train{slot_key}"
    root = data_root()
    choices = [k for k in SOURCES if k != "folder" or root is not None]
    source = st.radio("Fit on the cluster with", choices, format_func=SOURCES.get,
                      horizontal=True, key="cluster_source")
    relative = ""
    if source == "folder" and root is not None:
        relative = st.text_input(f"Folder under {md(root)}", key="cluster_folder",
                                 help="A folder of normal images or an MVTec-style category; "
                                      "every worker must see it at the same path.")
    files = st.session_state.get(f"{prefix}_files")
    go = st.button("Fit on the cluster", key="cluster_fit", type="primary",
                   disabled=settings is None or not ready
                   or (source == "upload" and not files) or (source == "folder" and not relative))
    if not go or settings is None:
        return
    batch = _batch(source, files, root, relative)
    if batch is not None:
        save_name = st.session_state.get(f"{prefix}_save_name", "") if save_to_library else None
        panels.fit_and_save(slot_key, batch, settings, save_name, client=client)


def _batch(source: str, files: Any, root: Path | None, relative: str) -> ImageBatch | None:
    if source == "upload":
        return uploads.uploaded_batch(files)
    if source == "folder" and root is not None:
        return attempt(folder_batch, root, relative)
    return attempt(actions.load_demo, "train")
