"""A throw-away OpenID Connect provider on loopback, for the single sign-on tests.

The smallest provider ``st.login`` (Authlib's code flow) accepts: discovery document,
an authorize endpoint that signs in whoever the test names (no login page: it redirects
straight back with a code), a token endpoint that returns an RS256-signed ID token with the
nonce it was given, and the key set to check it with. Loopback only, on a free port; every
wait bounded. Not a mock of our code: Streamlit and Authlib talk to it over HTTP as they
would to a real provider.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from fastapi import FastAPI, Form, HTTPException
from fastapi.responses import RedirectResponse
from joserfc import jwt
from joserfc.jwk import RSAKey
from streamlit_server import free_port

CLIENT_ID = "padim-inspector-test"
CLIENT_SECRET = "not-a-real-secret-only-for-the-test-provider"


@dataclass
class Provider:
    """The running provider: its issuer URL, and the claims the next sign-in gets."""

    issuer: str
    claims: dict[str, Any] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def secrets_toml(self, app_url: str) -> str:
        """Streamlit's ``[auth]`` section pointing at this provider."""
        return (f'[auth]\nredirect_uri = "{app_url}/oauth2callback"\n'
                f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
                f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
                f'server_metadata_url = "{self.metadata_url}"\n')


def _app(provider: Provider, key: RSAKey) -> FastAPI:
    app = FastAPI()

    @app.get("/.well-known/openid-configuration")
    def discovery() -> dict[str, Any]:
        i = provider.issuer
        return {"issuer": i, "authorization_endpoint": f"{i}/authorize",
                "token_endpoint": f"{i}/token", "jwks_uri": f"{i}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"]}

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False)]}

    @app.get("/authorize")
    def authorize(client_id: str, redirect_uri: str, state: str,
                  nonce: str | None = None) -> RedirectResponse:
        if client_id != CLIENT_ID:
            raise HTTPException(400, "unknown client")
        code = secrets.token_urlsafe(16)
        provider.codes[code] = {"nonce": nonce, **provider.claims}
        return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}",
                                status_code=302)

    @app.post("/token")
    def token(code: str = Form(...)) -> dict[str, Any]:
        claims = provider.codes.pop(code, None)
        if claims is None:
            raise HTTPException(400, "unknown or used code")
        now = int(time.time())
        body = {"iss": provider.issuer, "aud": CLIENT_ID, "iat": now, "exp": now + 600,
                **{k: v for k, v in claims.items() if v is not None}}
        id_token = jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)
        return {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                "expires_in": 600, "id_token": id_token}

    return app


@contextlib.contextmanager
def oidc_provider(timeout: float = 30.0) -> Iterator[Provider]:
    """Run the provider on a free loopback port for the duration of the block."""
    port = free_port()
    provider = Provider(issuer=f"http://127.0.0.1:{port}")
    key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig"})
    server = uvicorn.Server(uvicorn.Config(_app(provider, key), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test OIDC provider did not start")
        time.sleep(0.05)
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(timeout=10)
