"""A service whose replicated types have an owner it cannot reach refuses to start."""

from __future__ import annotations

import pytest

from tests.conftest import SERVICES, make_settings


def test_a_missing_owner_url_fails_the_start_naming_the_owner(database_url: str):
    _, factory = SERVICES["scheduling"]
    settings = make_settings(
        "scheduling",
        database_url,
        kafka_bootstrap_servers="127.0.0.1:9",
        peer_urls={"intake": "http://127.0.0.1:9/fhir"},
    )
    with pytest.raises(ValueError, match="peer_urls lacks outcomes"):
        factory(settings)
