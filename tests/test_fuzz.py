"""Schemathesis against each service's OpenAPI, as a real process: no input may cause a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.auth_support import process_auth, staff_token
from tooling.service_process import ServiceProcess

# Bounded so the whole suite stays within its time budget on 2 cores.
SECONDS_PER_SERVICE = "25"


@pytest.mark.parametrize("service", ["intake", "scheduling", "outcomes"])
def test_no_input_produces_a_server_error(service: str, tmp_path: Path) -> None:
    with ServiceProcess(service, data_dir=str(tmp_path), **process_auth()) as running:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{running.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-time",
                SECONDS_PER_SERVICE,
                "--max-examples",
                "40",
                "--seed",
                "20261125",
                "--workers",
                "1",
                "--request-timeout",
                "20",
                "--no-color",
                # With a valid programme-wide token: the routes themselves are fuzzed.
                "--header",
                f"Authorization: Bearer {staff_token()}",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
