"""Kafka client settings: partitions, topic creation, and TLS/SASL for production brokers."""

from __future__ import annotations

import logging
import ssl
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.events import kafka
from shared.settings import settings_class
from tests.kafka_support import (  # noqa: F401  (fixtures)
    eventually,
    kafka_broker,
    new_database,
    running,
)
from tooling.broker import Broker

Settings = settings_class("scheduling", 8002)
FIXTURES = Path(__file__).parent / "fixtures"


def test_partitions_and_topic_creation_read_the_service_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCHEDULING_TOPIC_PARTITIONS", "6")
    monkeypatch.setenv("SCHEDULING_CREATE_TOPICS", "false")
    monkeypatch.setenv("INTAKE_TOPIC_PARTITIONS", "3")
    settings = Settings()
    assert settings.topic_partitions == 6
    assert settings.create_topics is False
    assert settings_class("outcomes", 8003)().topic_partitions == 1


def test_plaintext_by_default_adds_no_tls_or_sasl() -> None:
    assert kafka.security(Settings()) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_with_scram_and_the_cluster_ca(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cafile = tmp_path / "ca.crt"
    cafile.write_text(_self_signed_ca())
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "kemdr-scheduling")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(cafile))
    settings = Settings()
    assert "s3cret" not in repr(settings)
    options = kafka.security(settings)
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "kemdr-scheduling",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # the cluster CA, not the system's


async def test_every_client_gets_the_security_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "u")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "p")
    settings = Settings(kafka_bootstrap_servers="broker:9093")
    clients = [
        kafka.producer(settings).client,
        kafka.consumer(settings, "t", group="g")._client,
        kafka.admin(settings)._client,
    ]
    for client in clients:
        assert client._security_protocol == "SASL_PLAINTEXT"
        assert client._sasl_mechanism == "SCRAM-SHA-256"
        assert (client._sasl_plain_username, client._sasl_plain_password) == ("u", "p")


def test_ssl_without_a_ca_file_trusts_the_system_cas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    options = kafka.security(Settings())
    assert set(options) == {"security_protocol", "ssl_context"}
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("name", "value"),
    [("KAFKA_SECURITY_PROTOCOL", "TLS"), ("KAFKA_SASL_MECHANISM", "GSSAPI")],
)
def test_unknown_protocols_and_mechanisms_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_sasl_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "kemdr-scheduling")
    with pytest.raises(ValidationError, match="KAFKA_SASL_PASSWORD"):
        Settings()


async def test_topics_are_created_with_the_configured_partitions(
    kafka_broker: Broker,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    narrow = Settings(kafka_bootstrap_servers=kafka_broker.bootstrap, topic_partitions=2)
    await kafka.ensure_topics(narrow, [f"{prefix}Patient"])
    wide = Settings(kafka_bootstrap_servers=kafka_broker.bootstrap, topic_partitions=6)
    with caplog.at_level(logging.WARNING, logger="shared.events.kafka"):
        await kafka.ensure_topics(wide, [f"{prefix}Patient", f"{prefix}Patient.dlq"])
    admin = kafka.admin(wide)
    await admin.start()
    try:
        counts = await kafka.partition_counts(admin)
    finally:
        await admin.close()
    # An existing topic keeps its partitions (adding them is the operator's decision).
    assert counts[f"{prefix}Patient"] == 2
    assert counts[f"{prefix}Patient.dlq"] == 6
    assert f"topic {prefix}Patient has 2 partitions, fewer than the 6" in caplog.text


async def test_without_topic_creation_a_missing_topic_is_an_error(
    kafka_broker: Broker,  # noqa: F811
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    settings = Settings(kafka_bootstrap_servers=kafka_broker.bootstrap, create_topics=False)
    with pytest.raises(kafka.TopicsMissing, match="SCHEDULING_CREATE_TOPICS is off") as raised:
        await kafka.ensure_topics(settings, [f"{prefix}Patient"])
    assert raised.value.topics == [f"{prefix}Patient"]
    admin = kafka.admin(settings)
    await admin.start()
    try:
        assert f"{prefix}Patient" not in await kafka.partition_counts(admin)
    finally:
        await admin.close()


async def test_a_service_is_not_ready_while_topics_it_may_not_create_are_missing(
    kafka_broker: Broker,  # noqa: F811
    new_database,  # noqa: F811
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}.fhir."
    async with running(
        "scheduling",
        new_database("scheduling"),
        kafka_bootstrap_servers=kafka_broker.bootstrap,
        topic_prefix=prefix,
        create_topics=False,
    ) as service:
        # The replica topics and their dead-letter topics, and the topics it owns (the
        # consumer and the relay each report theirs when they first try).
        expected = {f"{prefix}Patient", f"{prefix}Patient.dlq", f"{prefix}Appointment"}

        async def not_ready() -> list[str]:
            response = await service.client.get("http://testserver/readyz")
            assert response.status_code == 503
            missing = response.json()["missingTopics"]
            assert expected <= set(missing)
            return missing

        await eventually(not_ready, timeout=20)
        assert service.events.status()["consumer"]["reason"].startswith("topics missing")


def _self_signed_ca() -> str:
    """A throwaway CA certificate in PEM (cryptography comes with the JWT libraries)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-ca")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()
