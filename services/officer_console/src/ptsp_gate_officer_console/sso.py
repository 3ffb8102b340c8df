"""Single sign-on with OpenID Connect: the authorization code flow with PKCE, for provinces that
run an identity provider. The provider says who the person is (its `sub` claim); the console
says what that person may do (the account linked to it, its role and regions).

The three requests of the flow are made here with HTTPX; the ID token is verified with joserfc
(signature against the provider's published keys, issuer, audience, expiry, nonce). Why not a
higher-level client: docs/decisions/0008-single-sign-on.md.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ptsp_gate.accounts import credentials
from ptsp_gate.config import Settings
from ptsp_gate_officer_console.security import same_token

DISCOVERY = "/.well-known/openid-configuration"
# The provider's keys and endpoints are read again after this long, so that a key rotation is
# picked up without a restart.
PROVIDER_TTL_S = 3600.0
# Asymmetric signatures only: an HMAC-signed token would be checked with the client secret,
# which a provider need not even use, and `none` is never acceptable.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
LEEWAY_S = 60
MAX_RESPONSE_BYTES = 1_000_000
# The `error` values of an authorization response (RFC 6749 §4.1.2.1, OpenID Connect Core §3.1.2.6).
PROVIDER_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "interaction_required",
        "login_required",
        "account_selection_required",
        "consent_required",
        "invalid_request_uri",
        "invalid_request_object",
        "request_not_supported",
        "request_uri_not_supported",
        "registration_not_supported",
    }
)


class SignOnFailed(Exception):
    """The provider did not vouch for anyone: said in words for the audit record."""


@dataclass(frozen=True, slots=True)
class Provider:
    authorization_endpoint: str
    token_endpoint: str
    keys: KeySet


@dataclass(frozen=True, slots=True)
class Pending:
    """What the browser carries between leaving for the provider and coming back, in a short-
    lived HttpOnly cookie: the flow's state, the ID token's nonce, the PKCE verifier, and where
    to go afterwards."""

    state: str
    nonce: str
    verifier: str
    next: str

    def encode(self) -> str:
        target = base64.urlsafe_b64encode(self.next.encode()).decode().rstrip("=")
        return ".".join((self.state, self.nonce, self.verifier, target))

    @classmethod
    def decode(cls, text: str | None) -> Pending | None:
        parts = (text or "").split(".")
        if len(parts) != 4 or len(text or "") > 4000:
            return None
        try:
            target = base64.urlsafe_b64decode(parts[3] + "=" * (-len(parts[3]) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return cls(parts[0], parts[1], parts[2], target)


class SingleSignOn:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        # Settings checks that the three come together.
        assert settings.console_oidc_issuer is not None
        assert settings.console_oidc_client_id is not None
        assert settings.console_oidc_redirect_url is not None
        self.issuer = settings.console_oidc_issuer.rstrip("/")
        self.client_id = settings.console_oidc_client_id
        self.client_secret = settings.secret("console_oidc_client_secret")
        self.redirect_url = settings.console_oidc_redirect_url
        self._http = httpx.AsyncClient(transport=transport, timeout=10.0, follow_redirects=False)
        self._provider: Provider | None = None
        self._read_at = 0.0

    async def close(self) -> None:
        await self._http.aclose()

    async def provider(self, *, again: bool = False) -> Provider:
        if self._provider is None or again or time.monotonic() - self._read_at > PROVIDER_TTL_S:
            document = await self._json("GET", self.issuer + DISCOVERY)
            if str(document.get("issuer", "")).rstrip("/") != self.issuer:
                raise SignOnFailed("the provider's discovery document names another issuer")
            try:
                published: Any = await self._json("GET", str(document["jwks_uri"]))
                keys = KeySet.import_key_set(published)
                self._provider = Provider(
                    str(document["authorization_endpoint"]), str(document["token_endpoint"]), keys
                )
            except (KeyError, TypeError, ValueError, JoseError) as exc:
                raise SignOnFailed(f"the provider's metadata is unusable: {exc}") from None
            self._read_at = time.monotonic()
        return self._provider

    async def begin(self, next_path: str) -> tuple[str, Pending]:
        """Where to send the browser, and what it must bring back."""
        provider = await self.provider()
        pending = Pending(
            credentials.new_token(), credentials.new_token(), credentials.new_token(), next_path
        )
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(pending.verifier.encode()).digest())
            .decode()
            .rstrip("=")
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_url,
                "scope": "openid",
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in provider.authorization_endpoint else "?"
        return provider.authorization_endpoint + separator + query, pending

    async def finish(self, pending: Pending | None, state: str, code: str) -> str:
        """The `sub` the provider vouches for, after checking the flow came back to the browser
        that began it and the ID token is the provider's, for this console, fresh and ours."""
        if pending is None or not same_token(state, pending.state):
            raise SignOnFailed("the sign-on did not begin in this browser (state mismatch)")
        provider = await self.provider()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_url,
            "code_verifier": pending.verifier,
            "client_id": self.client_id,
        }
        auth = (self.client_id, self.client_secret) if self.client_secret else None
        answer = await self._json("POST", provider.token_endpoint, data=form, auth=auth)
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise SignOnFailed("the provider answered without an ID token")
        claims = await self._verified(id_token, provider)
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_S,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": pending.nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise SignOnFailed(f"the ID token was refused: {exc}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not 1 <= len(subject) <= 255:
            raise SignOnFailed("the ID token's subject is not usable")
        return subject

    async def _verified(self, id_token: str, provider: Provider) -> dict[str, Any]:
        try:
            return dict(jwt.decode(id_token, provider.keys, algorithms=ALGORITHMS).claims)
        except JoseError:
            pass
        # Perhaps the provider rotated its keys since they were read: once more, with new ones
        # (at most once a minute, whatever tokens arrive).
        if time.monotonic() - self._read_at < 60:
            raise SignOnFailed("the ID token's signature could not be verified")
        try:
            fresh = await self.provider(again=True)
            return dict(jwt.decode(id_token, fresh.keys, algorithms=ALGORITHMS).claims)
        except (JoseError, ValueError) as exc:
            raise SignOnFailed(f"the ID token's signature could not be verified: {exc}") from None

    async def _json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise SignOnFailed(f"the provider could not be reached: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise SignOnFailed(f"the provider answered {response.status_code} to {method}")
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise SignOnFailed("the provider's answer is too large")
        try:
            body = response.json()
        except ValueError:
            raise SignOnFailed("the provider's answer is not JSON") from None
        if not isinstance(body, dict):
            raise SignOnFailed("the provider's answer is not a JSON object")
        return body
