"""``padim serve`` with API tokens (issue 20): a request without a valid bearer token gets 401
before its body is read; a token works until revoked; on a network address the service
refuses to start without any token, and on loopback it needs none unless asked."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from padim_core import PadimModel
from padim_core.access_commands import token_checker
from padim_core.demo import make_demo_set
from padim_core.errors import InvalidInputError
from padim_core.service import create_app
from padim_core.store import Store


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_set(tmp_path_factory.mktemp("tokens") / "demo", n_train=12,
                         n_test_good=1, n_test_defect=1, size=128)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokens") / "ws"


def _args(data_dir: Path, host: str, require_token: bool = False) -> argparse.Namespace:
    return argparse.Namespace(host=host, require_token=require_token, data_dir=str(data_dir))


@pytest.fixture(scope="module")
def served(demo: Path, data_dir: Path) -> Iterator[tuple[TestClient, str, Store]]:
    model = PadimModel(d=8, image_size=96, crop=96, device="cpu").fit(
        sorted((demo / "train" / "good").glob("*.png")))
    store = Store.open(data_dir)
    with pytest.raises(InvalidInputError, match="--host 0.0.0.0: API tokens are required"):
        token_checker(_args(data_dir, "0.0.0.0"))
    token, _ = store.users.add_token("line 3")
    check = token_checker(_args(data_dir, "0.0.0.0"))
    with TestClient(create_app(model, max_wait_ms=5, check_token=check)) as client:
        yield client, token, store
    store.close()


def _post(client: TestClient, demo: Path, headers: dict[str, str] | None = None) -> object:
    image = sorted((demo / "test").glob("*/*.png"))[0]
    return client.post("/predict", files={"file": (image.name, image.read_bytes(),
                                                   "image/png")}, headers=headers or {})


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=",
                                    "Bearer padim_not-a-real-token", "Bearer ' OR 1=1 --",
                                    "Bearer " + "x" * 10_000])
def test_requests_without_a_valid_token_get_401(served: tuple, demo: Path,
                                                header: str | None) -> None:
    client, _, _ = served
    headers = {"Authorization": header} if header is not None else {}
    for r in (_post(client, demo, headers), client.get("/health", headers=headers),
              client.get("/model", headers=headers)):
        assert r.status_code == 401, r.text
        assert "API token" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_valid_token_is_served_until_revoked(served: tuple, demo: Path,
                                               data_dir: Path) -> None:
    client, token, store = served
    good = {"Authorization": f"Bearer {token}"}
    r = _post(client, demo, good)
    assert r.status_code == 200 and r.json()["verdict"] in ("OK", "NG")
    assert client.get("/health", headers=good).status_code == 200
    assert client.get("/openapi.json").status_code == 200   # the API description stays open
    store.users.revoke_token("line 3")
    r = _post(client, demo, good)
    assert r.status_code == 401 and "not valid" in r.json()["error"]


def test_loopback_needs_no_token_unless_asked(tmp_path: Path) -> None:
    assert token_checker(_args(tmp_path / "ws", "127.0.0.1")) is None
    with pytest.raises(InvalidInputError, match="--require-token: API tokens are required"):
        token_checker(_args(tmp_path / "ws", "127.0.0.1", require_token=True))


def test_a_refused_serve_leaves_no_workspace_behind(tmp_path: Path) -> None:
    """Refusing (no tokens) created an empty workspace in whatever folder it ran from."""
    with pytest.raises(InvalidInputError, match="there is no workspace at .*give --data-dir"):
        token_checker(_args(tmp_path / "ws", "10.1.2.3"))
    assert not (tmp_path / "ws").exists()
