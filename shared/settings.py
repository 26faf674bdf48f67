"""Service settings: one class per service, each with its own environment prefix."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PEERS = {
    "intake": "http://127.0.0.1:8001/fhir",
    "scheduling": "http://127.0.0.1:8002/fhir",
    "outcomes": "http://127.0.0.1:8003/fhir",
}


class ServiceSettings(BaseSettings):
    """Settings every FHIR service shares; subclasses set the name, port and env prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "service"
    host: str = "127.0.0.1"
    port: int = 8000
    # FHIR base path under which every interaction is mounted.
    base_path: str = "/fhir"
    # Empty means the embedded SQLite file var/<service>.db.
    database_url: str = ""
    data_dir: str = "var"
    max_body_bytes: int = 1024 * 1024
    default_page_size: int = 50
    max_page_size: int = 1000
    # Run alembic upgrade at start; a Kubernetes Job can do it instead and switch this off.
    migrate_on_start: bool = True
    log_level: str = "info"
    # `json`: one object per line (for the cluster's log pipeline); `text` for a terminal.
    log_format: Literal["json", "text"] = "json"
    # uvicorn worker processes, to use several cores (with PostgreSQL: SQLite has one writer).
    # The relay's leader lock keeps one publisher; migrate with `migrate` first, not on start.
    workers: int = Field(default=1, ge=1)

    # Events. Empty bootstrap servers: the outbox still fills, nothing is relayed or consumed.
    kafka_bootstrap_servers: str = Field(
        default="",
        validation_alias=AliasChoices("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    topic_prefix: str = "fhir."
    # Partitions of the topics this service creates. Events are keyed `<Type>/<id>`, so each
    # resource stays on one partition, in order; more partitions let more processes consume.
    topic_partitions: int = Field(default=1, ge=1, le=1000)
    # Off where something else owns the topics (Strimzi's KafkaTopic resources): the service
    # then only checks that its topics exist, and waits (not ready) while one is missing.
    create_topics: bool = True
    # Kafka's client security (aiokafka's options), shared by every service like the servers.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        validation_alias=AliasChoices("kafka_security_protocol", "KAFKA_SECURITY_PROTOCOL"),
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512",
        validation_alias=AliasChoices("kafka_sasl_mechanism", "KAFKA_SASL_MECHANISM"),
    )
    kafka_sasl_username: str = Field(
        default="", validation_alias=AliasChoices("kafka_sasl_username", "KAFKA_SASL_USERNAME")
    )
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("kafka_sasl_password", "KAFKA_SASL_PASSWORD"),
    )
    # The CA that signed the brokers' certificates (Strimzi: the cluster CA's ca.crt); empty
    # trusts the system's CAs.
    kafka_ssl_cafile: str = Field(
        default="", validation_alias=AliasChoices("kafka_ssl_cafile", "KAFKA_SSL_CAFILE")
    )
    # Kafka refuses sessions under 6 s by default; on the dev broker a group's first join
    # waits about half of it, so `make run` and the tests lower it.
    kafka_session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        validation_alias=AliasChoices("kafka_session_timeout_ms", "KAFKA_SESSION_TIMEOUT_MS"),
    )
    # How long a fetch may wait for data. Apache Kafka answers as soon as data arrives; the
    # dev broker tends to hold a fetch for part of it, which adds straight to the latency.
    kafka_fetch_max_wait_ms: int = Field(
        default=25,
        ge=1,
        validation_alias=AliasChoices("kafka_fetch_max_wait_ms", "KAFKA_FETCH_MAX_WAIT_MS"),
    )
    # On for Apache Kafka; the dev broker (Tansu, in memory) does not support it.
    kafka_idempotent_producer: bool = False
    # Resources larger than this travel as id-only events that consumers fetch over HTTP.
    event_max_data_bytes: int = 256 * 1024
    # Run the outbox relay inside the service; Kubernetes may run `relay` as its own process.
    relay_in_process: bool = True
    relay_batch_size: int = 500
    consumer_max_attempts: int = 5
    consumer_backoff_seconds: float = 0.2
    # The FHIR base of each service, for catching up replicas over `_history`.
    peer_urls: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_PEERS))
    resync_on_start: bool = True
    # Client time-outs of every Kafka client (request, metadata); the outage tests lower them.
    kafka_request_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        validation_alias=AliasChoices("kafka_request_timeout_ms", "KAFKA_REQUEST_TIMEOUT_MS"),
    )
    # A consumer that cannot consume this long although the broker answers fails liveness.
    consumer_stall_s: float = Field(default=120.0, gt=0)
    # A gap in an owner's event sequence open this long triggers a catch-up from `_history`.
    gap_timeout_s: float = Field(default=30.0, gt=0)
    # Anti-entropy: compare counts and newest lastUpdated with each owner this often (0: off).
    reconcile_interval_s: float = Field(default=300.0, ge=0)
    # How long the brokers keep events (Kafka's default is 7 days): a replica older than this
    # cannot catch up from its topic and resynchronises from the owner at start.
    kafka_topic_retention_hours: float = Field(default=168.0, gt=0)

    # Query bounds: no single request may tie up a worker or the database.
    max_sort_keys: int = Field(default=5, ge=1)
    max_param_values: int = Field(default=100, ge=1)
    max_query_params: int = Field(default=50, ge=1)
    statement_timeout_ms: int = Field(default=10_000, ge=100)
    # SIGTERM: in-flight requests get this long before the process exits anyway.
    shutdown_grace_s: float = Field(default=20.0, gt=0)
    # The canonical base of the conformance resources the programme publishes
    # (OperationDefinition, Questionnaire, CodeSystem...): `<base>/<Type>/<id>` is their url.
    canonical_base: str = "https://fhir.example.org/kemdr"
    # Where /docs loads Swagger UI's script and styles; empty serves them from the package.
    docs_assets_url: str = ""

    # Security. The issuer whose tokens are accepted (its metadata names the JWKS); empty
    # refuses to start unless auth_disabled says, explicitly, that every route is open.
    auth_issuer: str = ""
    # Pinned keys instead of the issuer's JWKS endpoint: a JWKS document, or a path to one.
    auth_jwks: str = ""
    auth_disabled: bool = False
    # The `aud` a token must carry: the public FHIR base of this service behind its proxy.
    # Empty: http://<host>:<port><base_path>, right only when clients connect directly.
    auth_audience: str = ""
    auth_practice_claim: str = "practice"
    auth_clock_skew_s: int = Field(default=60, ge=0, le=600)
    auth_max_token_bytes: int = Field(default=16_384, ge=512)
    # Unknown `kid`: refetch the JWKS, but never more often than this.
    auth_jwks_min_refresh_s: float = Field(default=60.0, ge=0)
    # This service's own client (SMART Backend Services, private_key_jwt) for calls to peers.
    auth_client_id: str = ""
    auth_client_key_file: str = ""
    # Empty: the token endpoint named in the issuer's metadata.
    auth_token_endpoint: str = ""
    # Browser origins allowed by CORS; none by default.
    cors_origins: list[str] = Field(default_factory=list)
    # Addresses (or CIDR blocks) of proxies whose X-Forwarded-* headers are believed.
    trusted_proxies: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> ServiceSettings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        return self

    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL to use: the configured one or the embedded SQLite file."""
        if self.database_url:
            return with_psycopg_driver(self.database_url)
        return f"sqlite:///{self.data_dir}/{self.service_name}.db"


def with_psycopg_driver(url: str) -> str:
    """A libpq-style `postgresql://` (or `postgres://`) URL as SQLAlchemy's psycopg 3 URL.

    Operators hand out plain libpq URIs (CloudNativePG's `<cluster>-app` Secret, key `uri`);
    SQLAlchemy reads a bare `postgresql://` as psycopg2, which is not installed.
    """
    scheme, separator, rest = url.partition("://")
    if separator and scheme.lower() in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def settings_class(name: str, port: int) -> type[ServiceSettings]:
    """Build the settings class of one service, reading `<NAME>_*` environment variables."""
    prefix = f"{name.upper()}_"
    return type(
        f"{name.title()}Settings",
        (ServiceSettings,),
        {
            "__annotations__": {"service_name": str, "port": int},
            "service_name": name,
            "port": port,
            "model_config": SettingsConfigDict(env_prefix=prefix, extra="ignore"),
        },
    )
