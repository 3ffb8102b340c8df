"""Settings from the environment (twelve-factor).

`KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` keep their conventional names; everything else is
prefixed `PTSP_GATE_`. Unset bootstrap servers or database URL mean "start an embedded one" for the
local commands (`dev`, tests, benchmark); the services themselves require both.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ptsp_gate.contract import topics

# Kafka's legal topic characters; a name with others could not even be written as a `dlq replay`
# address.
_TOPIC_CHARS = r"^[A-Za-z0-9._-]{1,249}$"

# Connection parameters whose values are hidden when a DSN is shown: `password`, `sslpassword`,
# and anything else named like a secret (a misspelt `passwd=` is hidden too).
_SECRET_KEY = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)
_REDACTED = "***"
_IPV6_HOST = re.compile(r"\[[^\]]+\](?::(?P<port>.*))?")
_URL_START = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*://")
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# libpq's connection parameters, the only names a key=value DSN shows values of: in a string
# that is not really a DSN, "name=value" could be a password holding '='.
_LIBPQ_KEYWORDS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "passfile",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "sslnegotiation",
        "requiressl",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "require_auth",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "min_protocol_version",
        "max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
    }
)


class Settings(BaseSettings):
    # Validation errors never echo what was given: some settings are secrets.
    model_config = SettingsConfigDict(
        env_prefix="PTSP_GATE_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    kafka_bootstrap_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    # Secret: the URL carries the password. `dsn()` gives the value to connect with;
    # `redact_dsn` gives the one to print.
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    # The URL carries the password, so it may come from a mounted secret file instead; the file
    # wins, as for the Kafka secrets.
    database_url_file: Path | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL_FILE", "database_url_file")
    )

    # Kafka security. Secrets come from the environment or, preferably, from files (mounted
    # Kubernetes secrets): a *_FILE setting wins over the plain one.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_key_password_file: Path | None = None

    topic_applications: str = Field(default=topics.TOPIC_APPLICATIONS, pattern=_TOPIC_CHARS)
    topic_enrolment: str = Field(default=topics.TOPIC_ENROLMENT, pattern=_TOPIC_CHARS)
    topic_decisions: str = Field(default=topics.TOPIC_DECISIONS, pattern=_TOPIC_CHARS)
    # Non-empty: an empty suffix would make a dead-letter topic the input topic itself, and a bad
    # record would be read back for ever.
    dlq_suffix: str = Field(default=topics.DLQ_SUFFIX, pattern=_TOPIC_CHARS)

    group_permit_checker: str = "ptsp-gate-permit-checker"
    group_enrolment_sync: str = "ptsp-gate-enrolment-sync"
    client_id: str = "ptsp-gate"
    event_source: str = "urn:ptsp-gate:permit-checker"

    policy_dir: Path | None = None
    max_event_bytes: int = Field(default=1_048_576, ge=1024, le=16 * 1_048_576)
    batch_max_records: int = Field(default=1000, ge=1, le=10_000)
    # FastStream waits this long for records and, when none came, sleeps as long again: up to
    # twice this is added to an event that arrives while the consumer idles. On Apache Kafka
    # (whose fetch answers within milliseconds) 50 ms was the largest part of the latency at
    # 500 events/s (bench/README.md); full batches are not affected.
    batch_timeout_ms: int = Field(default=10, ge=1, le=10_000)
    relay_batch_size: int = Field(default=2000, ge=1, le=50_000)
    db_pool_size: int = Field(default=4, ge=2, le=100)
    retry_max_delay_s: float = Field(default=5.0, gt=0, le=300)
    graceful_timeout_s: float = Field(default=20.0, gt=0, le=600)
    # /ready answers 503 when the consumer has handled nothing for this long while records wait.
    # Longer than a slow batch (seconds) and than a group rebalance (the 10 s session timeout).
    consumer_stuck_after_s: float = Field(default=120.0, ge=15, le=86_400)

    redecide_window_days: int = Field(default=90, ge=1, le=3650)
    # The longest any one query of a command (`flagged`, `employer`, `coverage`, `projection`,
    # `dlq`, `outbox`, ...) may run before PostgreSQL cancels it: a forgotten command cannot hold
    # a server's worker. Schema migrations and bulk imports are not limited.
    statement_timeout_s: float = Field(default=60.0, gt=0, le=86_400)
    sweep_interval_s: float = Field(default=300.0, ge=1, le=86_400)
    # How often the permit checker looks for officer overrides granted or ended since it last
    # looked (one indexed query), and the longest an override may be granted for.
    override_poll_s: float = Field(default=5.0, ge=0.5, le=3_600)
    override_max_days: int = Field(default=90, ge=1, le=366)

    # The officer console: a signed-in session ends after this many hours however it is used, or
    # after this many minutes without a request; its cookie carries `Secure` (sent over HTTPS
    # only) unless this is false, which only a console on localhost without TLS needs.
    console_session_hours: float = Field(default=8.0, gt=0, le=24)
    console_idle_minutes: float = Field(default=30.0, gt=0, le=24 * 60)
    console_secure_cookies: bool = True
    # How often the console computes the last twelve months' coverage figures of every region
    # ahead, for its dashboard and the API's default question.
    console_figures_refresh_s: float = Field(default=300.0, ge=10, le=3_600)
    # Single sign-on with OpenID Connect, for provinces that run an identity provider: the
    # issuer (its discovery document is ISSUER/.well-known/openid-configuration), this console's
    # client at it, and the redirect URL registered there (https://HOST/login/oidc/callback).
    # All unset: sign-in with passwords only.
    console_oidc_issuer: str | None = Field(default=None, pattern=r"^https?://[^\s?#]+$")
    console_oidc_client_id: str | None = Field(default=None, min_length=1, max_length=200)
    console_oidc_client_secret: SecretStr | None = None
    console_oidc_client_secret_file: Path | None = None
    console_oidc_redirect_url: str | None = Field(default=None, pattern=r"^https?://[^\s#]+$")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    data_dir: Path = Path(".ptsp-gate")

    @model_validator(mode="after")
    def _single_sign_on_whole(self) -> Settings:
        parts = {
            "PTSP_GATE_CONSOLE_OIDC_ISSUER": self.console_oidc_issuer,
            "PTSP_GATE_CONSOLE_OIDC_CLIENT_ID": self.console_oidc_client_id,
            "PTSP_GATE_CONSOLE_OIDC_REDIRECT_URL": self.console_oidc_redirect_url,
        }
        if any(parts.values()) and not all(parts.values()):
            missing = ", ".join(name for name, value in parts.items() if not value)
            raise ValueError(f"single sign-on needs {missing} as well")
        return self

    @model_validator(mode="after")
    def _topics_distinct(self) -> Settings:
        topics = self.all_topics()
        if len(set(topics)) != len(topics):
            raise ValueError(
                "topic settings must name different topics (inputs, decisions and their "
                f"dead-letter topics): {', '.join(topics)}"
            )
        return self

    @field_validator("policy_dir", mode="before")
    @classmethod
    def _empty_policy_dir_is_unset(cls, value: object) -> object:
        # An empty variable would otherwise mean the current directory, silently.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_database_url_is_unset(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _database_url_from_file(self) -> Settings:
        if self.database_url_file is not None:
            try:
                url = self.database_url_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"cannot read DATABASE_URL_FILE {self.database_url_file}: {exc.strerror}"
                ) from exc
            if not url:
                raise ValueError(f"DATABASE_URL_FILE {self.database_url_file} is empty")
            source = f"DATABASE_URL_FILE {self.database_url_file}"
            # Frozen model: the one place a value is derived after validation.
            object.__setattr__(self, "database_url", SecretStr(url))
        else:
            source = "DATABASE_URL"
        if self.database_url is not None:
            dsn = self.dsn()
            problem = dsn_problem(dsn)
            if problem is not None:
                # Checked here rather than at the first connection, whose driver error would be a
                # traceback (or quote the URL); the URL is shown with its password hidden.
                raise ValueError(f"{source}: {problem}: {redact_dsn(dsn)}")
            # The driver reads PGPORT for every URL with a host, and fails on it the same way.
            pgport = os.environ.get("PGPORT")
            if pgport and _ports_problem(pgport.split(",")):
                raise ValueError("PGPORT: a port is not a number from 1 to 65535")
        return self

    @field_validator("kafka_bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    def dsn(self) -> str:
        """The database URL, password included, to connect with: never print or log it (print
        `redact_dsn(...)` instead). Only when set: test `database_url` first."""
        if self.database_url is None:
            raise ValueError("DATABASE_URL is not set")
        return self.database_url.get_secret_value()

    def secret(self, name: str) -> str | None:
        """A secret setting's value: from its *_FILE when given (trailing newline dropped)."""
        path = getattr(self, f"{name}_file")
        if path is not None:
            try:
                return str(path.read_text(encoding="utf-8")).rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"cannot read {name}_file {path}: {exc.strerror}") from exc
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None

    def dlq_topic(self, source_topic: str) -> str:
        return source_topic + self.dlq_suffix

    def input_topics(self) -> list[str]:
        return [self.topic_applications, self.topic_enrolment]

    def all_topics(self) -> list[str]:
        """Every topic ptsp-gate reads or writes, for provisioning embedded and test brokers."""
        inputs = self.input_topics()
        return [*inputs, self.topic_decisions, *(self.dlq_topic(t) for t in inputs)]


def dsn_problem(dsn: str) -> str | None:
    """Why asyncpg could not use `dsn`, in words that quote nothing of it; None when it can.

    Only the syntax is checked (scheme, ports, query string); whether the server answers is the
    connection's business.
    """
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return "not a valid URL"
    if "://" not in dsn or parts.scheme not in ("postgresql", "postgres"):
        return "not a URL of the form postgresql://user:password@host:port/database"
    query: dict[str, list[str]] = {}
    if parts.query:
        try:
            query = urllib.parse.parse_qs(parts.query, strict_parsing=True)
        except ValueError:
            return "the query string after '?' is not name=value pairs joined by '&'"
    # As asyncpg splits it: user information ends at the first '@'.
    hosts = parts.netloc.partition("@")[2] if "@" in parts.netloc else parts.netloc
    problem = _hosts_problem(hosts, unquote=True) if hosts else None
    if problem is None and query.get("host"):
        problem = _hosts_problem(query["host"][-1], unquote=False)
    if problem is None and query.get("port"):
        problem = _ports_problem(query["port"][-1].split(","))
    return problem


def _hosts_problem(hosts: str, *, unquote: bool) -> str | None:
    ports = []
    for spec in hosts.split(","):
        if not spec:
            return "the host list has an empty entry"
        if spec.startswith("/"):  # a Unix socket directory
            continue
        if spec.startswith("["):
            match = _IPV6_HOST.fullmatch(spec)
            if match is None:
                return "an IPv6 host is not written [address] or [address]:port"
            port = match.group("port") or ""
        else:
            port = spec.partition(":")[2]
        ports.append(urllib.parse.unquote(port) if unquote else port)
    return _ports_problem([p for p in ports if p])


def _ports_problem(ports: list[str]) -> str | None:
    for port in ports:
        if not (len(port) <= 5 and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            return "a port is not a number from 1 to 65535"
    return None


def redact_dsn(dsn: str, limit: int = 500) -> str:
    """`dsn` fit to print or log: any password replaced by ***, on one line, at most `limit`
    characters. Never raises.

    URLs lose the password of their user information and the value of any query parameter
    named like a secret (`password`, `sslpassword`); key=value DSNs show only the values of
    libpq's other parameters; a string that is neither is not shown at all. A malformed DSN is
    redacted too generously rather than too little.
    """
    try:
        text = str(dsn)
        shown = _redact_url(text) if _URL_START.match(text) else _redact_keywords(text)
    except Exception:  # whatever it is, it is not printed
        shown = _REDACTED
    # Control characters (a newline could forge a log line) are shown escaped.
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in shown)
    return shown if len(shown) <= limit else shown[: max(limit - 3, 0)] + "..."


def _redact_url(text: str) -> str:
    scheme, _, rest = text.partition("://")
    # The user information ends at the last '@' anywhere: a password may hold '@', '/', '?' or
    # '#' unencoded, and a wrong guess must hide too much, never too little.
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        rest = (f"{user}:{_REDACTED}" if colon else user) + rest[at:]
    head, question, query = rest.partition("?")
    if not question:
        return f"{scheme}://{rest}"
    pairs: list[str] = []
    for pair in query.split("&"):  # a fragment stays in its pair: '#' may be in a password
        key, equals, _value = pair.partition("=")
        if not pair:
            pairs.append(pair)
        elif not equals or not _KEYWORD.fullmatch(urllib.parse.unquote(key)):
            pairs.append(_REDACTED)  # not name=value: it could be anything, a password included
        elif _SECRET_KEY.search(urllib.parse.unquote(key)):
            pairs.append(f"{key}={_REDACTED}")
        else:
            pairs.append(pair)
    return f"{scheme}://{head}?{'&'.join(pairs)}"


def _redact_keywords(text: str) -> str:
    """A libpq key=value DSN (`host=db user=app password='a b'`), secrets replaced."""
    if "=" not in text:
        return _REDACTED if text.strip() else text
    words = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        while i < n and not text[i].isspace() and text[i] != "=":
            i += 1
        key = text[start:i]
        j = i
        while j < n and text[j].isspace():
            j += 1
        if j >= n or text[j] != "=":
            words.append(_REDACTED)  # not key=value: it could be anything, a password included
            continue
        i = j + 1
        while i < n and text[i].isspace():
            i += 1
        value_start = i
        if i < n and text[i] == "'":
            i += 1
            while i < n and text[i] != "'":
                i += 2 if text[i] == "\\" else 1
            i = min(i + 1, n)
        else:
            while i < n and not text[i].isspace():
                i += 1
        if _SECRET_KEY.search(key) and _KEYWORD.fullmatch(key):
            words.append(f"{key}={_REDACTED}")
        elif key in _LIBPQ_KEYWORDS:
            words.append(f"{key}={text[value_start:i]}")
        else:
            words.append(_REDACTED)  # not a parameter name: a mangled URL, say
    return " ".join(words)
