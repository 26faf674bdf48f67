"""Send a cohort to the three services over their FHIR APIs, a few patients at a time, waiting
(bounded) wherever one service must first learn from another's events."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tooling.demo.plan import (
    Await,
    Cohort,
    PatientPlan,
    Put,
    Review,
    Step,
    Together,
    Transaction,
)

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
RETRIED = (429, 502, 503, 504)  # busy or not reachable for a moment: asked again
ATTEMPTS = 5
# Fields of a patient's last resource that tell it was loaded by this very cohort.
MARKER_FIELDS = ("status", "valueInteger", "effectiveDateTime", "authored", "start", "dateTime")


class LoadError(RuntimeError):
    """A request the services refused, or an event that did not arrive in time."""


@dataclass
class Report:
    """What a load did."""

    written: Counter[tuple[str, str]] = field(default_factory=Counter)  # (service, type)
    patients: int = 0
    skipped: int = 0  # found loaded already (a second run)
    seconds: float = 0.0


def _why(response: httpx.Response) -> str:
    """The OperationOutcome's diagnostics (or the start of the body)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "; ".join(
            f"{issue.get('diagnostics', issue.get('code'))} at {issue.get('expression', [])}"
            for issue in body.get("issue", [])
        )
    return response.text[:300]


class Loader:
    """Loads a cohort through `clients` (service name -> client whose base_url is the FHIR
    base, authorised for every type); `clinician` are the headers of a Practitioner's token
    for the calls that need a person (empty: the clients' own token names one)."""

    def __init__(
        self,
        clients: dict[str, httpx.AsyncClient],
        *,
        clinician: dict[str, str] | None = None,
        concurrency: int = 6,
        wait_s: float = 60.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.clients = clients
        self.clinician = clinician or {}
        self.concurrency = concurrency
        self.wait_s = wait_s
        self.progress = progress
        self.report = Report()
        self.questionnaire: str | None = None

    # ---- requests ------------------------------------------------------------------------
    async def request(
        self, service: str, method: str, path: str, *, expect: tuple[int, ...] = (200, 201), **kw
    ) -> httpx.Response:
        """One request, asked again when the service is busy or unreachable for a moment;
        LoadError naming the request and the service's reason otherwise."""
        client = self.clients[service]
        headers = {**FHIR_JSON, **kw.pop("headers", {})}
        for attempt in range(ATTEMPTS):
            try:
                response = await client.request(method, path, headers=headers, **kw)
            except httpx.TransportError as exc:
                if attempt == ATTEMPTS - 1:
                    raise LoadError(f"{service} {method} {path}: {exc!r}") from None
            else:
                if response.status_code in expect:
                    return response
                if response.status_code not in RETRIED or attempt == ATTEMPTS - 1:
                    raise LoadError(
                        f"{service} {method} {path}: {response.status_code} {_why(response)}"
                    )
            await asyncio.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    async def put(self, put: Put) -> None:
        body = put.resource
        if body["resourceType"] == "QuestionnaireResponse":
            body = {**body, "questionnaire": await self.screening_questionnaire()}
        await self.request(put.service, "PUT", put.path, json=body)
        self.report.written[(put.service, put.resource["resourceType"])] += 1

    async def bundle(self, step: Together | Transaction) -> None:
        """The puts as one batch or transaction Bundle; every entry must succeed."""
        (service,) = {put.service for put in step.puts}
        entries = [
            {"resource": put.resource, "request": {"method": "PUT", "url": put.path[1:]}}
            for put in step.puts
        ]
        kind = "batch" if isinstance(step, Together) else "transaction"
        bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}
        answer = (await self.request(service, "POST", "/", json=bundle, expect=(200,))).json()
        for put, entry in zip(step.puts, answer.get("entry", []), strict=True):
            status = entry.get("response", {}).get("status", "")
            if not status.startswith(("200", "201")):
                outcome = entry.get("response", {}).get("outcome", {})
                why = "; ".join(i.get("diagnostics", "") for i in outcome.get("issue", []))
                raise LoadError(f"{service} {kind} entry PUT {put.path}: {status} {why}")
            self.report.written[(service, put.resource["resourceType"])] += 1

    async def wait(self, step: Await) -> None:
        """Poll until the service holds it; LoadError after `wait_s`."""
        deadline = time.monotonic() + self.wait_s
        params = list(step.query)
        delay = 0.1
        while True:
            response = await self.request(
                step.service, "GET", step.path, params=params, expect=(200, 404, 410)
            )
            if response.status_code == 200 and self._holds(response.json(), step.status):
                return
            if time.monotonic() > deadline:
                what = f"{step.path}?{step.query}" if step.query else step.path
                raise LoadError(
                    f"{step.service} did not learn of {what}"
                    f"{f' ({step.status})' if step.status else ''} within {self.wait_s:g} s: "
                    "are the broker and every service running?"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    @staticmethod
    def _holds(found: dict[str, Any], status: str | None) -> bool:
        if found.get("resourceType") == "Bundle":
            resources = [e.get("resource", {}) for e in found.get("entry", [])]
            return any(status is None or r.get("status") == status for r in resources)
        return status is None or found.get("status") == status

    async def review(self, step: Review) -> None:
        """`$review` of the patient's episode; one decided already (a second run) is kept."""
        query = [("patient", f"Patient/{step.patient}"), ("_sort", "-_lastUpdated")]
        found = (await self.request("intake", "GET", "/EpisodeOfCare", params=query)).json()
        episodes = [e["resource"] for e in found.get("entry", [])]
        if not episodes:
            raise LoadError(f"intake opened no EpisodeOfCare for Patient/{step.patient}")
        body = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "decision", "valueCode": step.decision},
                {"name": "reason", "valueString": step.reason},
            ],
        }
        path = f"/EpisodeOfCare/{episodes[0]['id']}/$review"
        await self.request(
            "intake", "POST", path, json=body, headers=self.clinician, expect=(200, 409)
        )
        self.report.written[("intake", "EpisodeOfCare/$review")] += 1

    async def screening_questionnaire(self) -> str:
        """`url|version` of the newest published screening Questionnaire."""
        if self.questionnaire is None:
            params = {"name": "KetamineEmdrScreening", "_sort": "-_lastUpdated", "_count": "1"}
            found = (await self.request("intake", "GET", "/Questionnaire", params=params)).json()
            if not found.get("entry"):
                raise LoadError("intake publishes no screening Questionnaire")
            questionnaire = found["entry"][0]["resource"]
            self.questionnaire = f"{questionnaire['url']}|{questionnaire['version']}"
        return self.questionnaire

    # ---- the load ------------------------------------------------------------------------
    async def step(self, step: Step) -> None:
        if isinstance(step, Put):
            await self.put(step)
        elif isinstance(step, Together | Transaction):
            await self.bundle(step)
        elif isinstance(step, Await):
            await self.wait(step)
        else:
            await self.review(step)

    async def loaded(self, plan: PatientPlan) -> bool:
        """Whether a run of this very cohort loaded the patient already (its last resource
        is there as planned)."""
        last = plan.puts()[-1]
        response = await self.request(last.service, "GET", last.path, expect=(200, 404, 410))
        if response.status_code != 200:
            return False
        stored = response.json()
        return all(stored.get(k) == last.resource.get(k) for k in MARKER_FIELDS)

    async def patient(self, plan: PatientPlan) -> None:
        if await self.loaded(plan):
            self.report.skipped += 1
            return
        for step in plan.steps:
            try:
                await self.step(step)
            except LoadError as exc:
                raise LoadError(f"Patient/{plan.patient}: {exc}") from None

    async def load(self, cohort: Cohort) -> Report:
        """The clinic, then every patient (`concurrency` at a time); stops at the first
        failure, raising LoadError with its reason."""
        await self.clinic(cohort)
        return await self.patients(cohort)

    async def clinic(self, cohort: Cohort) -> None:
        """Practices, staff, rooms and schedules (before any patient)."""
        for put in cohort.clinic:
            await self.put(put)

    async def patients(self, cohort: Cohort) -> Report:
        """Every patient's steps, `concurrency` patients at a time."""
        began = time.monotonic()
        queue: asyncio.Queue[PatientPlan] = asyncio.Queue()
        for plan in cohort.patients:
            queue.put_nowait(plan)
        total = len(cohort.patients)
        if self.progress:
            self.progress(0, total)

        async def worker() -> None:
            while not queue.empty():
                plan = queue.get_nowait()
                await self.patient(plan)
                self.report.patients += 1
                if self.progress:
                    self.progress(self.report.patients, total)

        workers = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        self.report.seconds = time.monotonic() - began
        return self.report
