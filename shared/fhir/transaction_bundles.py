"""Transaction (atomic, urn:uuid references resolved) and batch Bundle processing."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.auth.needs import check_interaction
from shared.auth.principal import current_principal
from shared.auth.scopes import WRITE_INTERACTIONS
from shared.db.engine import SHUTDOWN, Database, StatementCancelled
from shared.fhir import json_body
from shared.fhir.dates import format_instant
from shared.fhir.errors import (
    FHIRError,
    bad_request,
    issue,
    operation_outcome,
    statement_stopped,
)
from shared.fhir.interactions import Interactions, Result, parse_etag
from shared.fhir.references import ID_PATTERN
from shared.fhir.result_bundles import searchset
from shared.log_safety import where_it_failed

log = logging.getLogger(__name__)

# Order in which a transaction's entries are processed (FHIR R4 http.html#trules).
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class Entry:
    """One Bundle entry's request, split into type, id, version and query."""

    def __init__(self, index: int, raw: Any, base: str) -> None:
        where = f"Bundle.entry[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
            raise bad_request(f"{where} has no request", [f"{where}.request"])
        request = raw["request"]
        self.index = index
        self.where = where
        self.method = str(request.get("method", "")).upper()
        if self.method not in _ORDER:
            raise bad_request(
                f"{where}.request.method '{request.get('method')}' is not one of "
                "GET, POST, PUT, PATCH, DELETE",
                [f"{where}.request.method"],
            )
        url = request.get("url")
        if not isinstance(url, str) or not url:
            raise bad_request(f"{where}.request.url is missing", [f"{where}.request.url"])
        if url.startswith(base + "/"):
            url = url[len(base) + 1 :]
        parts = urlsplit(url)
        self.query = parts.query
        segments = [s for s in parts.path.strip("/").split("/") if s]
        # Supported: Type, Type/id and (for GET) Type/id/_history/vid.
        versioned = len(segments) == 4 and segments[2] == "_history" and self.method == "GET"
        if not segments or (len(segments) > 2 and not versioned):
            raise bad_request(
                f"{where}.request.url is not [type], [type]/[id] or, for a GET, "
                "[type]/[id]/_history/[vid]",
                [f"{where}.request.url"],
            )
        self.type = segments[0]
        self.id = segments[1] if len(segments) > 1 else None
        self.version = segments[3] if versioned else None
        if self.id is not None and not ID_PATTERN.fullmatch(self.id):
            # Writing under such an id is a bad request; anything else finds nothing.
            status, code = (400, "invalid") if self.method == "PUT" else (404, "not-found")
            raise FHIRError(
                status,
                f"{where}: '{self.id[:80]}' is not a valid FHIR id "
                "(1-64 of A-Z, a-z, 0-9, '-', '.')",
                code=code,
                expression=[f"{where}.request.url"],
            )
        self.full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
        self.resource = raw.get("resource")
        try:
            self.if_match = parse_etag(request.get("ifMatch"))
        except FHIRError as exc:
            raise _locate(exc, self) from None
        if_none_exist = request.get("ifNoneExist")
        if if_none_exist is not None and not isinstance(if_none_exist, str):
            raise bad_request(
                f"{where}.request.ifNoneExist must be a search query string",
                [f"{where}.request.ifNoneExist"],
            )
        self.if_none_exist = if_none_exist or None
        self.assigned_id: str | None = None
        self.existing: Result | None = None

    @property
    def interaction(self) -> str:
        """The FHIR interaction this entry performs, for the scope check."""
        if self.method in ("GET", "HEAD"):
            return "vread" if self.version else ("read" if self.id else "search")
        return WRITE_INTERACTIONS[self.method]

    def check_scope(self) -> None:
        """403 (located at this entry) unless the caller's scopes allow it."""
        try:
            check_interaction(current_principal.get(), self.type, self.interaction)
        except FHIRError as exc:
            raise _locate(exc, self) from None

    @property
    def identity(self) -> str | None:
        """`Type/id` of a write that names its target; None for creates and conditionals."""
        if self.method in ("PUT", "PATCH", "DELETE") and self.id is not None:
            return f"{self.type}/{self.id}"
        return None

    @property
    def conditional(self) -> bool:
        """True when the entry selects its target by a search (and so takes the type's lock)."""
        if self.method == "POST":
            return bool(self.if_none_exist)
        return self.method in ("PUT", "DELETE") and self.id is None


def _rewrite(node: Any, mapping: dict[str, str]) -> Any:
    """Replace urn:uuid (and other fullUrl) references by the ids they were given."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in mapping:
                out[key] = mapping[value]
            else:
                out[key] = _rewrite(value, mapping)
        return out
    if isinstance(node, list):
        return [_rewrite(item, mapping) for item in node]
    return node


def _patch_operations(entry: Entry, mapping: dict[str, str]) -> Any:
    resource = entry.resource
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            operations = json_body.loads(base64.b64decode(resource.get("data", ""), validate=True))
            return _rewrite(operations, mapping) if mapping else operations
        except FHIRError as exc:
            raise bad_request(
                f"{entry.where}.resource: Binary.data is not a JSON Patch: {exc}",
                [f"{entry.where}.resource.data"],
            ) from None
        except (binascii.Error, ValueError, TypeError):
            raise bad_request(
                f"{entry.where}.resource: Binary.data is not a base64 JSON Patch",
                [f"{entry.where}.resource.data"],
            ) from None
    raise bad_request(
        f"{entry.where}: a PATCH entry carries its JSON Patch in a Binary resource",
        [f"{entry.where}.resource"],
    )


class BundleProcessor:
    """Runs transaction and batch Bundles through the same interactions as the REST API."""

    def __init__(self, interactions: Interactions, database: Database) -> None:
        self.interactions = interactions
        self.database = database

    def process(
        self, bundle: Any, base: str, return_pref: str | None, strict: bool = False
    ) -> dict[str, Any]:
        """Process a transaction or batch Bundle and build its response Bundle.

        `strict` (Prefer: handling=strict) applies to the searches of GET entries.
        """
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise bad_request("POST to the base takes a Bundle", ["resourceType"])
        kind = bundle.get("type")
        if kind not in ("transaction", "batch"):
            raise FHIRError(
                422,
                f"Bundle.type must be transaction or batch, not '{kind}'",
                code="invalid",
                expression=["Bundle.type"],
            )
        raw_entries = bundle.get("entry") or []
        if not isinstance(raw_entries, list):
            raise bad_request("Bundle.entry must be an array", ["Bundle.entry"])
        if kind == "transaction":
            entries = [Entry(i, raw, base) for i, raw in enumerate(raw_entries)]
            # Every entry is checked before anything is written.
            for entry in entries:
                entry.check_scope()
            results = self._transaction(entries, base, strict)
            pairs = zip(entries, results, strict=True)
            rendered = [self._render(e, r, base, return_pref) for e, r in pairs]
        else:
            rendered = [
                self._batch_entry(i, raw, base, return_pref, strict)
                for i, raw in enumerate(raw_entries)
            ]
        return {
            "resourceType": "Bundle",
            "type": f"{kind}-response",
            "entry": rendered,
        }

    def _transaction(self, entries: list[Entry], base: str, strict: bool) -> list[Result]:
        _check_unique(entries)
        results: list[Result | None] = [None] * len(entries)
        with self.database.write() as session:
            # Type locks first, in one order, so that transactions never wait on each other
            # in a cycle (row locks are only taken after them).
            for res_type in sorted({e.type for e in entries if e.conditional}):
                self.database.lock(session, f"conditional:{res_type}")
            # Then the rows the entries name, sorted, whatever order the entries come in.
            self.interactions.store.lock_rows(
                session, [(e.type, e.id) for e in entries if e.identity and e.id]
            )
            mapping = self._assign_ids(session, entries)
            for entry in entries:
                if mapping and entry.resource is not None:
                    entry.resource = _rewrite(entry.resource, mapping)
            for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
                try:
                    results[entry.index] = self._execute(session, entry, base, strict, mapping)
                except FHIRError as exc:
                    raise _locate(exc, entry) from None
        return [r for r in results if r is not None]

    def _assign_ids(self, session: Session, entries: list[Entry]) -> dict[str, str]:
        """Decide the id of every entry that creates or names one, keyed by its fullUrl."""
        ix = self.interactions
        mapping: dict[str, str] = {}
        for entry in entries:
            if entry.method not in ("POST", "PUT"):
                continue
            try:
                ix.writable(entry.type)
                if entry.method == "PUT" and entry.id is not None:
                    entry.assigned_id = entry.id
                elif entry.method == "PUT":
                    # Conditional update: the match's id, the body's id, or a new one.
                    found = ix.match_for_condition(session, entry.type, entry.query, source="url")
                    body_id = entry.resource.get("id") if isinstance(entry.resource, dict) else None
                    entry.assigned_id = (found.id if found else None) or body_id
                elif entry.if_none_exist:
                    found = ix.match_for_condition(session, entry.type, entry.if_none_exist)
                    if found is not None:
                        entry.existing = Result(200, found)
                        entry.assigned_id = found.id
                entry.assigned_id = entry.assigned_id or str(uuid.uuid4())
            except FHIRError as exc:
                raise _locate(exc, entry) from None
            if entry.full_url:
                mapping[entry.full_url] = f"{entry.type}/{entry.assigned_id}"
        return mapping

    def _execute(
        self,
        session: Session,
        entry: Entry,
        base: str,
        strict: bool,
        mapping: dict[str, str] | None = None,
    ) -> Result:
        ix = self.interactions
        if entry.method == "POST":
            if entry.existing is not None:
                return entry.existing
            if entry.id is not None:
                raise bad_request(f"{entry.where}: POST goes to a type, not an id")
            return ix.create(
                session,
                entry.type,
                entry.resource,
                assigned_id=entry.assigned_id,
                # In a transaction conditions were settled while assigning ids.
                if_none_exist=None if entry.assigned_id else entry.if_none_exist,
            )
        if entry.method == "PUT":
            if entry.id is None:
                return ix.conditional_update(
                    session,
                    entry.type,
                    entry.query,
                    entry.resource,
                    if_match=entry.if_match,
                    assigned_id=entry.assigned_id,
                )
            return ix.update(session, entry.type, entry.id, entry.resource, if_match=entry.if_match)
        if entry.method == "PATCH":
            if entry.id is None:
                raise bad_request(f"{entry.where}: PATCH needs Type/id")
            operations = _patch_operations(entry, mapping or {})
            return ix.patch(session, entry.type, entry.id, operations, if_match=entry.if_match)
        if entry.method == "DELETE":
            if entry.id is None:
                if not entry.query:
                    raise bad_request(
                        f"{entry.where}: DELETE needs Type/id or search parameters",
                        [f"{entry.where}.request.url"],
                    )
                return ix.conditional_delete(session, entry.type, entry.query)
            return ix.delete(session, entry.type, entry.id)
        # GET / HEAD
        if entry.id is None:
            found = ix.search(
                session,
                entry.type,
                parse_qsl(entry.query, keep_blank_values=True),
                strict=strict,
            )
            body = searchset(base, found.query, found.resources, found.total, found.included)
            return Result(200, body=body)
        if entry.version is not None:
            return ix.vread(session, entry.type, entry.id, entry.version)
        return ix.read(session, entry.type, entry.id)

    def _batch_entry(
        self, index: int, raw: Any, base: str, return_pref: str | None, strict: bool
    ) -> dict[str, Any]:
        try:
            entry = Entry(index, raw, base)
        except FHIRError as exc:
            return {"response": {"status": _status_line(exc.status), "outcome": exc.outcome()}}
        try:
            entry.check_scope()
            with self.database.write() as session:
                result = self._execute(session, entry, base, strict)
            return self._render(entry, result, base, return_pref)
        except FHIRError as exc:
            exc = _locate(exc, entry)
            return {"response": {"status": _status_line(exc.status), "outcome": exc.outcome()}}
        except StatementCancelled as cancelled:
            failure = statement_stopped(
                cancelled.timeout_ms, cancelled.reason, cancelled.reason == SHUTDOWN
            )
        except IntegrityError:
            failure = FHIRError(
                409, "A concurrent write conflicted with this entry; retry it", code="conflict"
            )
        except Exception as exc:
            # Earlier entries have committed: one entry's failure must not turn the whole
            # batch into a 500 that the client would retry, duplicating them.
            log.error("batch entry %d failed: %s", index, where_it_failed(exc))
            failure = FHIRError(500, "This entry failed on the server", code="exception")
        failure = _locate(failure, entry)
        return {"response": {"status": _status_line(failure.status), "outcome": failure.outcome()}}

    @staticmethod
    def _render(entry: Entry, result: Result, base: str, return_pref: str | None) -> dict[str, Any]:
        response: dict[str, Any] = {"status": _status_line(result.status)}
        rendered: dict[str, Any] = {}
        stored = result.stored
        if stored is not None:
            rendered["fullUrl"] = f"{base}/{stored.type}/{stored.id}"
            if entry.method not in ("GET", "HEAD"):
                response["location"] = stored.location
            response["etag"] = stored.etag
            response["lastModified"] = format_instant(stored.last_updated)
            if return_pref == "operationoutcome":
                response["outcome"] = operation_outcome(
                    [
                        issue(
                            "information",
                            "informational",
                            f"{stored.type}/{stored.id} is at version {stored.version_id}",
                        )
                    ]
                )
            elif return_pref != "minimal" and stored.resource is not None:
                rendered["resource"] = stored.resource
        elif result.body is not None:
            rendered["resource"] = result.body
        rendered["response"] = response
        return rendered


def _check_unique(entries: list[Entry]) -> None:
    """A resource may appear only once in a transaction, and each fullUrl only once."""
    seen: dict[str, Entry] = {}
    for entry in entries:
        for key in (entry.identity, entry.full_url):
            if key is None:
                continue
            if key in seen:
                raise bad_request(
                    f"{entry.where} and {seen[key].where} both name {key}; a transaction may "
                    "touch a resource (or use a fullUrl) only once",
                    [entry.where],
                )
            seen[key] = entry


def _entry_path(expression: str, entry: Entry) -> str:
    """Turn an expression from an interaction into a FHIRPath inside the Bundle."""
    where = entry.where
    if expression.startswith("Bundle."):
        return expression
    if expression == "If-Match":
        return f"{where}.request.ifMatch"
    if expression == "If-None-Exist":
        return f"{where}.request.ifNoneExist"
    if expression == "url":
        return f"{where}.request.url"
    if expression == "resourceType":
        return f"{where}.resource.resourceType"
    head, dot, rest = expression.partition(".")
    if head[:1].isupper() and head.isalnum():  # Patient.gender, or Patient itself
        return f"{where}.resource.{rest}" if dot else f"{where}.resource"
    # A search parameter: it came from the condition or the entry's URL.
    if entry.method == "POST" and entry.if_none_exist:
        return f"{where}.request.ifNoneExist"
    return f"{where}.request.url"


def _locate(exc: FHIRError, entry: Entry) -> FHIRError:
    """Point an error at the entry that caused it."""
    for item in exc.issues:
        if not item["diagnostics"].startswith("Bundle.entry["):
            item["diagnostics"] = f"{entry.where}: {item['diagnostics']}"
        expressions = item.get("expression") or [entry.where]
        item["expression"] = [_entry_path(e, entry) for e in expressions]
    return exc
