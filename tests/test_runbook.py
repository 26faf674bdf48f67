"""The runbook names only commands that exist, and answers every alert's runbook link."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from shared.cli import build_parser, main
from tests.conftest import SERVICES

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = ROOT / "docs" / "operations.md"
MONITORING = ROOT / "deploy" / "k8s" / "overlays" / "prod" / "monitoring.yaml"
_COMMAND = re.compile(r"python -m services\.(<name>|\w+)((?: [^`#\n]*)?)")


def runbook_commands() -> list[tuple[str, list[str]]]:
    """(service, words after the module) of every command the runbook names, in code spans
    and code blocks; `<name>` stands for each service."""
    text = RUNBOOK.read_text()
    spans = re.findall(r"`([^`\n]+)`", text) + re.findall(r"```sh\n(.*?)```", text, re.S)
    found: list[tuple[str, list[str]]] = []
    for span in spans:
        for match in _COMMAND.finditer(span.replace("\\\n", " ")):
            service, rest = match.group(1), match.group(2).strip()
            words = shlex.split(rest)
            names = list(SERVICES) if service == "<name>" else [service]
            found += [(name, words) for name in names]
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors() -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", RUNBOOK.read_text(), re.M)}


def test_the_runbook_names_commands() -> None:
    commands = runbook_commands()
    named = {tuple(words[:2]) for _, words in commands}
    for expected in [("dlq", "list"), ("dlq", "redrive"), ("reindex",), ("outbox", "status")]:
        assert any(words[: len(expected)] == expected for words in named), expected
    assert {service for service, _ in commands} == set(SERVICES)


@pytest.mark.parametrize(("service", "words"), runbook_commands(), ids=lambda v: str(v))
def test_every_command_in_the_runbook_exists(
    service: str, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Each parses as written (placeholders as values) and has its --help."""
    assert service in SERVICES, f"no service {service}"
    if "--help" not in words:
        build_parser(service).parse_args(words)
    # --help of the (sub)command itself: the words before the first option.
    verbs = []
    for word in words:
        if word.startswith("-"):
            break
        verbs.append(word)
    settings_cls, factory = SERVICES[service]
    with pytest.raises(SystemExit) as exited:
        main(settings_cls, factory, [*verbs, "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m services.{service}")


def test_alert_runbook_links_lead_to_sections() -> None:
    links = [
        rule["annotations"]["runbook"]
        for doc in yaml.safe_load_all(MONITORING.read_text())
        if doc and doc.get("kind") == "PrometheusRule"
        for group in doc["spec"]["groups"]
        for rule in group["rules"]
    ]
    assert links
    sections = anchors()
    for link in links:
        path, _, anchor = link.partition("#")
        assert path == "docs/operations.md", link
        assert anchor in sections, f"{link}: no such section in the runbook"


def test_the_runbooks_own_links_resolve() -> None:
    targets = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text())
    assert targets
    assert set(targets) <= anchors()


def test_every_alert_and_metric_is_explained() -> None:
    text = RUNBOOK.read_text()
    alerts = re.findall(r"alert: (\w+)", MONITORING.read_text())
    assert alerts and all(f"`{a}`" in text for a in alerts)
    source = (ROOT / "shared" / "observability" / "metrics.py").read_text()
    names = {f"kemdr{m}" for m in re.findall(r'f"\{PREFIX\}(_\w+)"', source)}
    names |= set(re.findall(r'"(http_\w+)"', source))
    assert len(names) >= 10
    for name in names:
        assert f"`{name}`" in text, name
