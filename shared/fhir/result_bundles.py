"""Result Bundles: searchset and history pages with absolute fullUrls and paging links."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from shared.fhir.dates import format_instant, utcnow
from shared.fhir.search import SearchQuery
from shared.fhir.store import Stored

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}


def _bundle(kind: str, total: int | None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": kind,
        "meta": {"lastUpdated": format_instant(utcnow())},
    }
    if total is not None:
        bundle["total"] = total
    return bundle


def _elements(resource: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    keep = {"resourceType", "id", "meta", *elements}
    subset = {k: v for k, v in resource.items() if k in keep}
    meta = dict(subset.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    subset["meta"] = meta
    return subset


def _paging_links(
    url: str,
    applied: list[tuple[str, str]],
    count: int,
    offset: int,
    has_next: bool,
    total: int | None,
    paged: bool = True,
) -> list[dict[str, str]]:
    def link(relation: str, at: int) -> dict[str, str]:
        params = [(k, v) for k, v in applied if k != "_count"] + [("_count", str(count))]
        if at:
            params.append(("_offset", str(at)))
        return {"relation": relation, "url": f"{url}?{urlencode(params)}"}

    self_params = list(applied) + ([("_offset", str(offset))] if offset else [])
    links = [{"relation": "self", "url": f"{url}?{urlencode(self_params)}" if self_params else url}]
    if count == 0 or not paged:
        return links
    links.append(link("first", 0))
    if offset > 0:
        links.append(link("previous", max(offset - count, 0)))
    if has_next:
        links.append(link("next", offset + count))
    if total is not None and total > 0:
        links.append(link("last", ((total - 1) // count) * count))
    return links


def _entry(
    base: str, resource: dict[str, Any], shown: dict[str, Any], mode: str = "match"
) -> dict[str, Any]:
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": shown,
        "search": {"mode": mode},
    }


def searchset(
    base: str,
    query: SearchQuery,
    resources: list[dict[str, Any]],
    total: int | None,
    included: list[dict[str, Any]],
) -> dict[str, Any]:
    """A searchset Bundle: matches, then included resources, with self/next links.

    The search fetched one row beyond the page (`query.more`), so the last page never
    carries a dead `next` link (hapi-fhir #1300).
    """
    bundle = _bundle("searchset", total)
    url = f"{base}/{query.resource_type}"
    more = bool(query.more)
    bundle["link"] = _paging_links(
        url,
        query.applied,
        query.count,
        query.offset,
        more,
        total,
        paged=not query.summary_count,
    )
    if query.summary_count:
        return bundle
    entries = [
        _entry(base, resource, _elements(resource, query.elements) if query.elements else resource)
        for resource in resources
    ]
    entries += [_entry(base, resource, resource, "include") for resource in included]
    if entries:
        bundle["entry"] = entries
    return bundle


_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}


def history(
    base: str,
    url: str,
    versions: list[Stored],
    total: int,
    count: int,
    offset: int,
    applied: list[tuple[str, str]],
) -> dict[str, Any]:
    """A history Bundle, newest first, each entry with its request and response."""
    bundle = _bundle("history", total)
    bundle["link"] = _paging_links(url, applied, count, offset, offset + count < total, total)
    entries = []
    for version in versions:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{version.type}/{version.id}"}
        if version.resource is not None:
            entry["resource"] = version.resource
        method = version.method
        request_url = version.type if method == "POST" else f"{version.type}/{version.id}"
        entry["request"] = {"method": method, "url": request_url}
        entry["response"] = {
            "status": "201 Created" if version.version_id == 1 else _STATUS.get(method, "200 OK"),
            "etag": version.etag,
            "lastModified": format_instant(version.last_updated),
        }
        entries.append(entry)
    if entries:
        bundle["entry"] = entries
    return bundle


def page_of(
    base: str,
    url: str,
    resources: list[dict[str, Any]],
    total: int,
    count: int,
    offset: int,
    applied: list[tuple[str, str]],
) -> dict[str, Any]:
    """A searchset page of resources an operation gathered, with stateless paging links."""
    bundle = _bundle("searchset", total)
    bundle["link"] = _paging_links(url, applied, count, offset, offset + count < total, total)
    entries = [_entry(base, resource, resource, "match") for resource in resources]
    if entries:
        bundle["entry"] = entries
    return bundle
