"""Settings from the environment (twelve-factor).

`KAFKA_BOOTSTRAP_SERVERS` and `DATABASE_URL` keep their conventional names; everything else is
prefixed `PTSP_GATE_`. Unset bootstrap servers or database URL mean "start an embedded one" for the
local commands (`dev`, tests, benchmark); the services themselves require both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Kafka's legal topic characters; a name with others could not even be written as a `dlq replay`
# address.
_TOPIC_CHARS = r"^[A-Za-z0-9._-]{1,249}$"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PTSP_GATE_", extra="ignore", frozen=True)

    kafka_bootstrap_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    database_url: str | None = Field(
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

    topic_applications: str = Field(default="ptsp.permit-applications.v1", pattern=_TOPIC_CHARS)
    topic_enrolment: str = Field(default="bpjstk.employer-enrolment.v1", pattern=_TOPIC_CHARS)
    topic_decisions: str = Field(default="compliance.permit-decisions.v1", pattern=_TOPIC_CHARS)
    # Non-empty: an empty suffix would make a dead-letter topic the input topic itself, and a bad
    # record would be read back for ever.
    dlq_suffix: str = Field(default=".dlq", pattern=_TOPIC_CHARS)

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

    redecide_window_days: int = Field(default=90, ge=1, le=3650)
    sweep_interval_s: float = Field(default=300.0, ge=1, le=86_400)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    data_dir: Path = Path(".ptsp-gate")

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
            # Frozen model: the one place a value is derived after validation.
            object.__setattr__(self, "database_url", url)
        return self

    @field_validator("kafka_bootstrap_servers", mode="before")
    @classmethod
    def _split_servers(cls, value: object) -> object:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

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
