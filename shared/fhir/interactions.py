"""The FHIR interactions, independent of HTTP: used by the REST routes and by Bundles."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy.orm import Session

from shared.auth.access import patient_data_condition, restriction, visible_any
from shared.auth.access_checks import check_write, require_visible
from shared.auth.needs import check_interaction, readable_includes
from shared.auth.principal import current_principal
from shared.fhir import exact_json
from shared.fhir.errors import Deleted, FHIRError, bad_request, not_found, precondition_failed
from shared.fhir.json_patch import apply_patch, check_operations
from shared.fhir.lexical import is_digits
from shared.fhir.registry import Registry, ResourceDef
from shared.fhir.rules import Action, WriteContext
from shared.fhir.search import QueryLimits, SearchQuery, parse_search
from shared.fhir.search_sql import included, run_search
from shared.fhir.store import ResourceStore, Stored
from shared.fhir.validation import validate_resource
from shared.settings import ServiceSettings


@dataclass
class Result:
    """The outcome of one interaction: a status and a stored version or another body."""

    status: int
    stored: Stored | None = None
    body: dict[str, Any] | None = None


@dataclass
class SearchResult:
    query: SearchQuery
    resources: list[dict[str, Any]]
    total: int | None
    included: list[dict[str, Any]]


def parse_etag(value: Any) -> int | None:
    """The version number in an `If-Match` ETag such as W/"3"; a malformed one is a 400."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if not isinstance(value, str):
        raise bad_request('If-Match must be a version ETag like W/"1"', ["If-Match"])
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not is_digits(text, 12):
        raise bad_request(
            f"If-Match '{value[:40]}' is not a version ETag like W/\"1\"", ["If-Match"]
        )
    return int(text)


class Interactions:
    """Create, read, update, patch, delete and search, checked against the registry."""

    def __init__(self, settings: ServiceSettings, registry: Registry, store: ResourceStore):
        self.settings = settings
        self.registry = registry
        self.store = store
        self.limits = QueryLimits(
            max_sort_keys=settings.max_sort_keys,
            max_param_values=settings.max_param_values,
            max_query_params=settings.max_query_params,
            prefix=f"{settings.service_name.upper()}_",
        )
        # Called with the resources a search or a history page hands out (the audit trail
        # notes whose data they are).
        self.result_hooks: list[Callable[[list[dict[str, Any]]], None]] = []

    # ---- checks ------------------------------------------------------------------------
    def definition(self, res_type: str) -> ResourceDef:
        """The declaration of a served type; 404 for any other."""
        definition = self.registry.get(res_type)
        if definition is None:
            raise not_found(f"Resource type '{res_type}' is not served by {self.registry.service}")
        return definition

    def writable(self, res_type: str) -> ResourceDef:
        """The declaration of a type this service owns; 405 for a replica or an audit type."""
        definition = self.definition(res_type)
        if not definition.api_writable:
            raise FHIRError(
                405,
                f"{res_type} is written by the service itself, never through the API",
                code="not-supported",
            )
        if definition.owner != self.registry.service:
            raise FHIRError(
                405,
                f"{res_type} is a read-only replica here; write it at the '{definition.owner}' "
                "service",
                code="not-supported",
            )
        return definition

    def _rules(
        self,
        session: Session,
        definition: ResourceDef,
        action: Action,
        res_id: str | None,
        resource: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        """Run the type's write rules, then its enrichers, after validation and before any
        row is written; returns the resource to store."""
        if not definition.rules and not definition.enrichers:
            return resource
        context = WriteContext(session, self, action, definition.type, res_id, resource)
        if action == "update" and context.previous is None:
            context.action = "create"  # an update to an unknown id creates it
        for rule in definition.rules:
            rule(context)
        if resource is None:
            return None
        for enrich in definition.enrichers:
            enriched = enrich(context)
            if enriched != context.resource:
                # What the service derived is checked as the client's content was.
                validate_resource(enriched, definition.type)
            context.resource = enriched
        return context.resource

    def _current_content(
        self, session: Session, definition: ResourceDef, res_id: str
    ) -> dict[str, Any] | None:
        """The current content a Patient update replaces (which practices it names); only
        read when a practice-limited caller writes a Patient."""
        if definition.type != "Patient" or restriction() is None:
            return None
        row = self.store.current_row(session, "Patient", res_id, lock=False)
        return exact_json.loads(row.content) if row is not None and row.content else None

    def _checked(self, res_type: str, body: Any, res_id: str | None = None) -> dict[str, Any]:
        validate_resource(body, res_type)
        if res_id is not None and body.get("id") not in (None, res_id):
            raise bad_request(
                f"The resource id '{body.get('id')}' differs from the URL id '{res_id}'",
                [f"{res_type}.id"],
            )
        return body

    # ---- writes ------------------------------------------------------------------------
    def create(
        self,
        session: Session,
        res_type: str,
        body: Any,
        *,
        if_none_exist: str | None = None,
        assigned_id: str | None = None,
    ) -> Result:
        """Create (client ids are ignored); conditional on `If-None-Exist` when given."""
        definition = self.writable(res_type)
        resource = self._checked(res_type, body)
        if if_none_exist:
            existing = self.match_for_condition(session, res_type, if_none_exist)
            if existing is not None:
                return Result(200, existing)
        resource.pop("id", None)
        check_write(session, definition, resource)
        assigned_id = self._id_for_rules(definition, assigned_id)
        resource = self._rules(session, definition, "create", assigned_id, resource)
        assert resource is not None
        return Result(201, self.store.create(session, res_type, resource, res_id=assigned_id))

    @staticmethod
    def _id_for_rules(definition: ResourceDef, assigned_id: str | None) -> str | None:
        """The id a create gets before its rules run: rules and enrichers may write or record
        references to the new resource, so it needs its id already."""
        if definition.rules or definition.enrichers:
            return assigned_id or str(uuid.uuid4())
        return assigned_id

    def match_for_condition(
        self, session: Session, res_type: str, condition: str, *, source: str = "If-None-Exist"
    ) -> Stored | None:
        """The single current match of a condition, None for none, 412 for several.

        `source` names where the condition came from (a header, or "url") for error messages.
        """
        # A condition is a search, and needs its scope as one would.
        check_interaction(current_principal.get(), res_type, "search")
        # One lock per type makes "search, then create" atomic against parallel twins.
        self.store.database.lock(session, f"conditional:{res_type}")
        matches = self.matches(session, res_type, condition, source=source)
        if len(matches) > 1:
            # The condition itself is not echoed: identifiers are patient data.
            raise precondition_failed(
                f"The condition matches {len(matches)} {res_type} resources; "
                "it must select at most one"
            )
        return matches[0] if matches else None

    def matches(
        self, session: Session, res_type: str, condition: str, *, source: str = "If-None-Exist"
    ) -> list[Stored]:
        """Current resources matching a conditional query (at most two are fetched)."""
        query_text = condition.strip()
        # `If-None-Exist` and `ifNoneExist` may also be written as "Patient?identifier=...".
        if "?" in query_text:
            path, query_text = query_text.split("?", 1)
            if path.rstrip("/").rsplit("/", 1)[-1] not in ("", res_type):
                raise bad_request(
                    f"The condition names another resource type than {res_type}", [source]
                )
        pairs = parse_qsl(query_text, keep_blank_values=True)
        query = parse_search(
            self.definition(res_type),
            pairs,
            registry=self.registry,
            default_count=2,
            max_count=2,
            strict=True,
            limits=self.limits,
        )
        if not query.clauses:
            # Without a criterion every resource of the type would match.
            raise bad_request("A conditional request needs at least one search criterion", [source])
        query.count, query.offset, query.total = 2, 0, "none"
        query.sort, query.includes, query.revincludes = [], [], []
        rows, _ = run_search(session, query, self.definition(res_type))
        return [self.store.read(session, res_type, row.res_id) for row in rows]

    def update(
        self, session: Session, res_type: str, res_id: str, body: Any, *, if_match: int | None
    ) -> Result:
        """Update, or create under the client's id (updateCreate)."""
        definition = self.writable(res_type)
        if isinstance(body, dict) and body.get("id") is None:
            raise bad_request(
                "An update must carry the resource id in its body", [f"{res_type}.id"]
            )
        resource = self._checked(res_type, body, res_id)
        # One the caller cannot see is not there (404); new content outside its practices, 403.
        require_visible(session, definition, res_id)
        check_write(
            session, definition, resource, self._current_content(session, definition, res_id)
        )
        resource = self._rules(session, definition, "update", res_id, resource)
        assert resource is not None
        stored, created = self.store.update(session, res_type, res_id, resource, if_match=if_match)
        if created:
            # Update-as-create creates: it needs that scope too (raising rolls it back).
            check_interaction(current_principal.get(), res_type, "create")
        return Result(201 if created else 200, stored)

    def conditional_update(
        self,
        session: Session,
        res_type: str,
        condition: str,
        body: Any,
        *,
        if_match: int | None,
        assigned_id: str | None = None,
    ) -> Result:
        """PUT [type]?query: create, update, or 412 for 0, 1, 2+ matches.

        `assigned_id` is the id a create gets when nothing matches and the body names none
        (a transaction decides it up front to resolve references).
        """
        definition = self.writable(res_type)
        resource = self._checked(res_type, body)
        existing = self.match_for_condition(session, res_type, condition, source="url")
        if existing is None:
            body_id = resource.get("id")
            if body_id:
                # Update-as-create under the body's id, but never over a resource that the
                # condition did not select (one the caller cannot see is not there).
                require_visible(session, definition, body_id)
                if self.store.exists(session, res_type, body_id):
                    raise bad_request(
                        f"No {res_type} matches the condition, and the body's id names an "
                        "existing resource that does not match it",
                        [f"{res_type}.id"],
                    )
                return self.update(session, res_type, body_id, resource, if_match=if_match)
            if if_match is not None:
                raise precondition_failed(
                    f'If-Match W/"{if_match}" given but no {res_type} matches the condition'
                )
            check_interaction(current_principal.get(), res_type, "create")
            check_write(session, definition, resource)
            assigned_id = self._id_for_rules(definition, assigned_id)
            resource = self._rules(session, definition, "create", assigned_id, resource)
            assert resource is not None
            created = self.store.create(
                session, res_type, resource, res_id=assigned_id, method="PUT"
            )
            return Result(201, created)
        if resource.get("id") not in (None, existing.id):
            raise bad_request(
                f"The resource id '{resource['id']}' differs from the matched {existing.id}",
                [f"{res_type}.id"],
            )
        check_write(session, definition, resource, existing.resource)
        resource = self._rules(session, definition, "update", existing.id, resource)
        assert resource is not None
        stored, _ = self.store.update(session, res_type, existing.id, resource, if_match=if_match)
        return Result(200, stored)

    def patch(
        self,
        session: Session,
        res_type: str,
        res_id: str,
        operations: Any,
        *,
        if_match: int | None,
    ) -> Result:
        """Apply a JSON Patch to the current version and store the result as a new version."""
        definition = self.writable(res_type)
        check_operations(operations)
        require_visible(session, definition, res_id)
        # Lock the row: a concurrent writer waits rather than making this patch fail.
        current = self.store.read(session, res_type, res_id, lock=True)
        if if_match is not None and if_match != current.version_id:
            raise precondition_failed(
                f'If-Match W/"{if_match}" does not match the current version '
                f'W/"{current.version_id}"'
            )
        patched = apply_patch(current.resource, operations, res_type, self.settings.max_body_bytes)
        if not isinstance(patched, dict) or patched.get("id") != res_id:
            raise FHIRError(
                422,
                "A patch may not change the resource id",
                code="invalid",
                expression=[f"{res_type}.id"],
            )
        resource = self._checked(res_type, patched, res_id)
        check_write(session, definition, resource, current.resource)
        resource = self._rules(session, definition, "update", res_id, resource)
        assert resource is not None
        stored, _ = self.store.update(
            session, res_type, res_id, resource, if_match=current.version_id, method="PATCH"
        )
        return Result(200, stored)

    def delete(self, session: Session, res_type: str, res_id: str) -> Result:
        """Delete; deleting what is already deleted is harmless (204)."""
        definition = self.writable(res_type)
        require_visible(session, definition, res_id)
        self._rules(session, definition, "delete", res_id, None)
        self.store.delete(session, res_type, res_id)
        return Result(204)

    def conditional_delete(self, session: Session, res_type: str, condition: str) -> Result:
        """DELETE [type]?query: deletes the single match; 412 when several match."""
        definition = self.writable(res_type)
        existing = self.match_for_condition(session, res_type, condition, source="url")
        if existing is not None:
            self._rules(session, definition, "delete", existing.id, None)
            self.store.delete(session, res_type, existing.id)
        return Result(204)

    # ---- reads -------------------------------------------------------------------------
    def read(self, session: Session, res_type: str, res_id: str) -> Result:
        definition = self.definition(res_type)
        condition = patient_data_condition(res_type)
        if condition is None:
            return Result(200, self.store.read(session, res_type, res_id))
        try:
            # Existence and visibility in one statement: the common read costs one query.
            return Result(200, self.store.read(session, res_type, res_id, visible=condition))
        except Deleted:
            require_visible(session, definition, res_id)  # 410 only to its practices
            raise

    def vread(self, session: Session, res_type: str, res_id: str, version: str) -> Result:
        require_visible(session, self.definition(res_type), res_id)
        if not is_digits(version):
            raise not_found(f"{res_type}/{res_id}/_history/{version[:20]} is not known")
        return Result(200, self.store.vread(session, res_type, res_id, int(version)))

    def history(
        self,
        session: Session,
        res_type: str | None,
        res_id: str | None,
        *,
        since: datetime | None,
        at_or_before: datetime | None,
        count: int,
        offset: int,
    ) -> tuple[list[Stored], int]:
        """Versions newest first at system, type or instance level; 404 for an id that
        never existed (as a read answers), an empty page for one with no version in range."""
        if res_type is not None:
            definition = self.definition(res_type)
            if res_id is not None:
                require_visible(session, definition, res_id)
        window: dict[str, Any] = {
            "since": since,
            "at_or_before": at_or_before,
            "count": count,
            "offset": offset,
        }
        types = [res_type] if res_type else sorted(self.registry.resources)
        # A restricted caller's type or system history sees only the resources it may see.
        # (Instance history was checked by require_visible above.) A deleted resource's
        # versions are left out for a restricted caller: with its index rows gone, which
        # practice it belonged to is no longer known at query time.
        visible = None if res_id is not None else visible_any(types)
        versions, total = self.store.history(
            session, res_type=res_type, res_id=res_id, visible=visible, **window
        )
        never_existed = (
            res_type is not None
            and res_id is not None
            and total == 0
            and self.store.current_row(session, res_type, res_id, lock=False) is None
        )
        if never_existed:
            raise not_found(f"{res_type}/{res_id} is not known")
        if self.result_hooks:
            shown = [v.resource for v in versions if v.resource is not None]
            for hook in self.result_hooks:
                hook(shown)
        return versions, total

    def search(
        self, session: Session, res_type: str, pairs: list[tuple[str, str]], *, strict: bool
    ) -> SearchResult:
        """Run a search and gather the page, the total and any included resources."""
        definition = self.definition(res_type)
        query = parse_search(
            definition,
            pairs,
            registry=self.registry,
            default_count=self.settings.default_page_size,
            max_count=self.settings.max_page_size,
            strict=strict,
            limits=self.limits,
        )
        readable = readable_includes(current_principal.get(), query, set(self.registry.resources))
        rows, total = run_search(session, query, definition)
        extra = included(session, rows, query, readable)
        resources = [exact_json.loads(r.content) for r in rows]
        for hook in self.result_hooks:
            hook(resources + extra)
        return SearchResult(query, resources, total, extra)
