"""Single sign-on with OpenID Connect, against an identity provider in the test: discovery, the
authorization code flow with PKCE, a signed ID token; then everything a provider, a browser or an
attacker could get wrong, each refused with the sign-in page and an audit record."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ptsp_gate.accounts.roles import Role
from ptsp_gate.stores import accounts
from tests.integration.console_support import client, running_console

pytestmark = pytest.mark.integration

ISSUER = "http://idp.test/realms/sulsel"
CLIENT_ID = "ptsp-console"
SECRET = "client secret of the console"
CALLBACK = "http://console.test/login/oidc/callback"


class Provider:
    """An OpenID provider, with switches for each way one can go wrong."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.signing_key = self.key
        self.subject = "9f1c-ana"
        self.codes: dict[str, dict[str, str]] = {}
        self.claims: dict[str, Any] = {}  # overrides of the ID token's claims
        self.token_status = 200
        self.issuer_in_discovery = ISSUER
        routes = [
            Route("/realms/sulsel/.well-known/openid-configuration", self.discovery),
            Route("/realms/sulsel/keys", self.keys),
            Route("/realms/sulsel/auth", self.authorize),
            Route("/realms/sulsel/token", self.token, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes)

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer_in_discovery,
                "authorization_endpoint": ISSUER + "/auth",
                "token_endpoint": ISSUER + "/token",
                "jwks_uri": ISSUER + "/keys",
            }
        )

    async def keys(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        assert q["response_type"] == "code"
        assert q["client_id"] == CLIENT_ID
        assert q["redirect_uri"] == CALLBACK
        assert q["code_challenge_method"] == "S256"
        code = f"code-{len(self.codes)}"
        self.codes[code] = dict(q)
        return RedirectResponse(f"{CALLBACK}?code={code}&state={q['state']}", 302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        basic = request.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
        if basic != expected:
            return JSONResponse({"error": "invalid_client"}, 401)
        asked = self.codes.pop(str(form["code"]), None)
        if asked is None:
            return JSONResponse({"error": "invalid_grant"}, 400)
        verifier = str(form["code_verifier"])
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .decode()
            .rstrip("=")
        )
        if challenge != asked["code_challenge"] or form["redirect_uri"] != CALLBACK:
            return JSONResponse({"error": "invalid_grant"}, 400)
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "sub": self.subject,
            "iat": now,
            "exp": now + 300,
            "nonce": asked["nonce"],
            **self.claims,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        header = {"alg": "RS256", "kid": "k1"}
        id_token = jwt.encode(header, claims, self.signing_key)
        return JSONResponse(
            {"access_token": "at", "token_type": "Bearer", "id_token": id_token},
            self.token_status,
        )


@pytest.fixture
async def provider_and_console(db: asyncpg.Connection, db_dsn: str):
    await accounts.add(db, "ana", Role.OFFICER, ["7314"], None, oidc_subject="9f1c-ana")
    provider = Provider()
    async with running_console(
        db_dsn,
        sso_transport=httpx.ASGITransport(app=provider.app),
        console_oidc_issuer=ISSUER,
        console_oidc_client_id=CLIENT_ID,
        console_oidc_client_secret=SECRET,
        console_oidc_redirect_url=CALLBACK,
    ) as console:
        yield provider, console


async def _round_trip(
    provider: Provider, http: httpx.AsyncClient, *, tamper: Any = None
) -> httpx.Response:
    """The browser's journey: the console, the provider, back to the console's callback."""
    away = await http.get("/login/oidc", params={"next": "/flagged"})
    assert away.status_code == 303
    assert away.headers["location"].startswith(ISSUER + "/auth?")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=provider.app)) as idp:
        back = await idp.get(away.headers["location"])
    callback = urlsplit(back.headers["location"])
    params = {k: v[0] for k, v in parse_qs(callback.query).items()}
    if tamper is not None:
        params = tamper(params)
    return await http.get("/login/oidc/callback", params=params)


async def test_a_linked_identity_signs_in_and_lands_where_it_was_going(
    provider_and_console, db
) -> None:
    provider, console = provider_and_console
    async with client(console) as http:
        form = await http.get("/login")
        assert "/login/oidc" in form.text
        done = await _round_trip(provider, http)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/flagged"
        page = await http.get("/flagged")
        assert page.status_code == 200
        assert "ana" in page.text
    login = await db.fetchrow(
        "SELECT actor, detail FROM audit_event WHERE action = 'LOGIN' ORDER BY event_id DESC"
    )
    assert login["actor"] == "ana"
    assert login["detail"] == {"via": "sso"}


def _state(params: dict[str, str]) -> dict[str, str]:
    return {**params, "state": "forged"}


REFUSALS = {
    "a forged state": ({}, _state, "state mismatch"),
    "another audience": ({"claims": {"aud": "someone-else"}}, None, "aud"),
    "an expired token": ({"claims": {"exp": int(time.time()) - 3600}}, None, "exp"),
    "another nonce": ({"claims": {"nonce": "replayed"}}, None, "nonce"),
    "another issuer": ({"claims": {"iss": "http://evil.test"}}, None, "iss"),
    "no subject": ({"claims": {"sub": None}}, None, "sub"),
    "a token signed by another key": (
        {"signing_key": RSAKey.generate_key(2048, parameters={"kid": "k1"})},
        None,
        "signature",
    ),
    "a token endpoint error": ({"token_status": 500}, None, "answered 500"),
    "an error no standard defines": (
        {},
        lambda p: {"error": "<script>alert(1)</script>", "state": p["state"]},
        "an unlisted error",
    ),
    "a provider that refused": (
        {},
        lambda p: {"error": "access_denied", "state": p["state"]},
        "access_denied",
    ),
}


@pytest.mark.parametrize(("setup", "tamper", "why"), REFUSALS.values(), ids=REFUSALS.keys())
async def test_what_the_console_refuses(provider_and_console, db, setup, tamper, why) -> None:
    provider, console = provider_and_console
    for name, value in setup.items():
        setattr(provider, name, value)
    async with client(console) as http:
        refused = await _round_trip(provider, http, tamper=tamper)
        assert refused.status_code == 401, refused.text
        assert "SSO" in refused.text
        assert (await http.get("/flagged")).status_code == 303  # still signed out
    failed = await db.fetchrow(
        "SELECT detail FROM audit_event WHERE action = 'LOGIN_FAILED' ORDER BY event_id DESC"
    )
    assert why in failed["detail"]["why"]
    assert failed["detail"]["via"] == "sso"


async def test_an_identity_without_an_account_or_a_disabled_one_is_refused(
    provider_and_console, db
) -> None:
    provider, console = provider_and_console
    provider.subject = "someone-unknown"
    async with client(console) as http:
        refused = await _round_trip(provider, http)
        assert refused.status_code == 403
    provider.subject = "9f1c-ana"
    await accounts.disable(db, "ana")
    async with client(console) as http:
        refused = await _round_trip(provider, http)
        assert refused.status_code == 403
    whys = [
        r["detail"]["why"]
        for r in await db.fetch(
            "SELECT detail FROM audit_event WHERE action = 'LOGIN_FAILED' ORDER BY event_id"
        )
    ]
    assert whys == ["unknown account", "account disabled"]


async def test_a_callback_without_the_cookie_and_a_console_without_sso(
    provider_and_console, db_dsn
) -> None:
    _, console = provider_and_console
    async with client(console) as http:
        bare = await http.get("/login/oidc/callback", params={"code": "code-0", "state": "x"})
        assert bare.status_code == 401
    async with running_console(db_dsn) as plain, client(plain) as http:
        assert "/login/oidc" not in (await http.get("/login")).text
        assert (await http.get("/login/oidc")).status_code == 404
        assert (await http.get("/login/oidc/callback")).status_code == 404


async def test_a_provider_naming_another_issuer_is_not_trusted(provider_and_console) -> None:
    provider, console = provider_and_console
    provider.issuer_in_discovery = "http://evil.test"
    async with client(console) as http:
        away = await http.get("/login/oidc")
        assert away.status_code == 503
        assert "SSO" in away.text


async def test_failed_callbacks_from_one_address_are_throttled(provider_and_console, db) -> None:
    _, console = provider_and_console
    async with client(console) as http:
        answers = [
            (await http.get("/login/oidc/callback", params={"error": "access_denied"})).status_code
            for _ in range(21)
        ]
    assert answers[:20] == [401] * 20
    assert answers[20] == 429
    assert "<script>" not in str(
        await db.fetch("SELECT detail FROM audit_event WHERE action = 'LOGIN_FAILED'")
    )
