"""Searchset Bundles: totals, links, paging, sorting, _summary, _include, errors, proxies."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from shared.events.replica import ReplicaWriter
from tests.conftest import BACKENDS
from tests.factories import FHIR_JSON, appointment, medication_administration, observation, patient
from tests.measures_support import known_patient
from tests.search_helpers import bad, create, found, include_ids, link, match_ids, search

pytestmark = BACKENDS

BASE = "http://testserver/fhir"


@pytest.fixture
def outcomes(outcomes: httpx.AsyncClient) -> httpx.AsyncClient:
    """Outcomes knowing the patient of these Observations (p1), as intake's event would."""
    known_patient(outcomes, "p1")
    return outcomes


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


async def follow(client: httpx.AsyncClient, bundle: dict) -> list[list[str]]:
    """Follow `next` links to the end; the ids of each page."""
    pages = [match_ids(bundle)]
    while (url := link(bundle, "next")) is not None:
        assert len(pages) < 20, "next links never end"
        response = await client.get(url)
        assert response.status_code == 200, response.text
        bundle = response.json()
        pages.append(match_ids(bundle))
    return pages


async def test_searchset_shape_and_self_link_lists_only_applied(intake: httpx.AsyncClient):
    a = await create(intake, patient("Chalmers"))
    await create(intake, patient("Windsor"))
    bundle = await search(
        intake,
        "/Patient",
        [("family", "chalmers"), ("unknown-thing", "x"), ("_foo", "1"), ("_count", "10")],
    )
    assert bundle["total"] == 1
    assert bundle["meta"]["lastUpdated"].endswith("Z")
    assert bundle["entry"] == [
        {
            "fullUrl": f"{BASE}/Patient/{a}",
            "resource": (await intake.get(f"/Patient/{a}")).json(),
            "search": {"mode": "match"},
        }
    ]
    self_url = link(bundle, "self")
    assert self_url is not None and self_url.startswith(f"{BASE}/Patient?")
    assert query_of(self_url) == [("family", "chalmers"), ("_count", "10")]
    assert link(bundle, "next") is None
    assert link(bundle, "previous") is None
    # Without parameters the self link is the bare type URL.
    everything = await search(intake, "/Patient")
    assert link(everything, "self") == f"{BASE}/Patient"
    assert everything["total"] == 2


async def test_unknown_parameters_ignored_or_400_when_strict(intake: httpx.AsyncClient):
    a = await create(intake, patient("Chalmers"))
    b = await create(intake, patient("Windsor"))
    assert await found(intake, "/Patient", {"nonsense": "1"}) == sorted([a, b])
    # Chained parameters are not supported, so they are unknown too.
    assert await found(intake, "/Patient", {"general-practitioner.name": "x"}) == sorted([a, b])
    lenient = await intake.get(
        "/Patient", params={"nonsense": "1"}, headers={"Prefer": "handling=lenient"}
    )
    assert lenient.status_code == 200 and lenient.json()["total"] == 2
    for params, name in (
        ({"family": "chalmers", "nonsense": "1"}, "nonsense"),
        ({"_nonsense": "1"}, "_nonsense"),
        ({"general-practitioner.name": "x"}, "general-practitioner.name"),
        ({"organization:Organization.name": "x"}, "organization:Organization.name"),
        ({"family": ""}, "family"),
    ):
        strict = await intake.get("/Patient", params=params, headers={"Prefer": "handling=strict"})
        assert strict.status_code == 400, strict.text
        outcome = strict.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == [name]
    ok = await intake.get(
        "/Patient", params={"family": "chalmers"}, headers={"Prefer": "handling=strict"}
    )
    assert [e["resource"]["id"] for e in ok.json()["entry"]] == [a]


async def test_empty_values_are_ignored(intake: httpx.AsyncClient):
    a = await create(intake, patient("Chalmers"))
    bundle = await search(intake, "/Patient", [("family", ""), ("birthdate", ""), ("_sort", "")])
    assert match_ids(bundle) == [a]
    assert link(bundle, "self") == f"{BASE}/Patient"


async def test_bad_values_are_400_naming_the_parameter(
    intake: httpx.AsyncClient, outcomes: httpx.AsyncClient
):
    await create(intake, patient())
    cases = [
        ({"birthdate": "notadate"}, "birthdate"),
        ({"birthdate": "gt"}, "birthdate"),
        ({"birthdate": "2026-02-30"}, "birthdate"),
        ({"birthdate": "xx2026"}, "birthdate"),
        ({"_lastUpdated": "2026-13"}, "_lastUpdated"),
        ({"_count": "x"}, "_count"),
        ({"_count": "-1"}, "_count"),
        ({"_offset": "x"}, "_offset"),
        ({"family:fuzzy": "x"}, "family:fuzzy"),
        ({"gender:exact": "male"}, "gender:exact"),
        ({"birthdate:exact": "2026"}, "birthdate:exact"),
        ({"_sort": "nosuch"}, "_sort"),
        ({"_total": "maybe"}, "_total"),
        ({"_summary": "nonsense"}, "_summary"),
        ({"_include": "Patient:nosuch"}, "_include"),
        ({"_include": "Patient"}, "_include"),
        ({"family": "a\x00b"}, "family"),
    ]
    for params, expression in cases:
        await bad(intake, "/Patient", params, expression)
    for params, expression in [
        ({"value-quantity": "abc"}, "value-quantity"),
        ({"value-quantity": "gt"}, "value-quantity"),
        ({"value-quantity": "NaN"}, "value-quantity"),
        ({"value-quantity": "5|urn:x|mg|extra"}, "value-quantity"),
        ({"date": "2026-03-01T25:00:00Z"}, "date"),
        ({"code:below": "x"}, "code:below"),
    ]:
        await bad(outcomes, "/Observation", params, expression)
    # Extreme but valid values are answered, never a 500.
    for params in (
        {"birthdate": "ap0001-01-01"},
        {"birthdate": "ap9999-12-31"},
        {"birthdate": "9999-12-31T23:59:59Z"},
        {"_offset": "99999999999999999999999"},
        {"_count": "99999999999999999999999"},
    ):
        response = await intake.get("/Patient", params=params)
        assert response.status_code == 200, (params, response.text)
    response = await outcomes.get("/Observation", params={"value-quantity": "1e400"})
    assert response.status_code == 200, response.text


async def test_count_default_and_maximum(
    intake: httpx.AsyncClient, service_client: Callable[..., httpx.AsyncClient]
):
    ids = [await create(intake, patient(f"P{i:02d}")) for i in range(52)]
    default = await search(intake, "/Patient")
    assert default["total"] == 52 and len(default["entry"]) == 50  # default page size 50
    assert dict(query_of(link(default, "next") or ""))["_count"] == "50"
    assert sorted(id_ for page in await follow(intake, default) for id_ in page) == sorted(ids)
    above_max = await search(intake, "/Patient", {"_count": "5000"})
    assert len(above_max["entry"]) == 52
    assert query_of(link(above_max, "self") or "") == [("_count", "1000")]  # the maximum

    async with service_client("intake", default_page_size=2, max_page_size=3) as small:
        page = await search(small, "/Patient")
        assert len(page["entry"]) == 2
        capped = await search(small, "/Patient", {"_count": "1000"})
        assert len(capped["entry"]) == 3
        assert ("_count", "3") in query_of(link(capped, "self") or "")
        none = await search(small, "/Patient", {"_count": "0"})
        assert none["total"] == 52 and "entry" not in none


async def test_paging_next_links_cover_everything_once(intake: httpx.AsyncClient):
    names = ["Adams", "Baker", "Clark", "Davis", "Evans", "Fox", "Green"]
    by_name = {name: await create(intake, patient(name)) for name in reversed(names)}
    first = await search(intake, "/Patient", {"_sort": "family", "_count": "3"})
    assert first["total"] == 7
    pages = await follow(intake, first)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [i for p in pages for i in p] == [by_name[n] for n in names]
    next_url = link(first, "next") or ""
    assert next_url.startswith(f"{BASE}/Patient?")
    assert dict(query_of(next_url)) == {"_sort": "family", "_count": "3", "_offset": "3"}
    second = (await intake.get(next_url)).json()
    assert dict(query_of(link(second, "previous") or "")).get("_offset", "0") == "0"
    assert dict(query_of(link(second, "self") or ""))["_offset"] == "3"

    # Exactly two full pages and no total: the last page must not offer a dead next link.
    await intake.delete(f"/Patient/{by_name['Green']}")
    no_total = await search(
        intake, "/Patient", {"_sort": "-family", "_count": "3", "_total": "none"}
    )
    assert "total" not in no_total
    pages = await follow(intake, no_total)
    assert pages == [
        [by_name[n] for n in ("Fox", "Evans", "Davis")],
        [by_name[n] for n in ("Clark", "Baker", "Adams")],
    ]
    exact = await search(intake, "/Patient", {"_count": "6"})
    assert len(exact["entry"]) == 6 and link(exact, "next") is None


async def test_sort_orders(intake: httpx.AsyncClient, outcomes: httpx.AsyncClient):
    march = await create(outcomes, observation(when="2026-03-01T10:00:00Z"))
    january = await create(outcomes, observation(when="2026-01-01T10:00:00Z"))
    undated_body = observation()
    del undated_body["effectiveDateTime"]
    undated = await create(outcomes, undated_body)
    february = await create(outcomes, observation(when="2026-02-01T10:00:00Z"))
    created = [march, january, undated, february]

    async def order(sort: str) -> list[str]:
        return match_ids(await search(outcomes, "/Observation", {"_sort": sort}))

    # Resources without a value come last, in either direction.
    assert await order("date") == [january, february, march, undated]
    assert await order("-date") == [march, february, january, undated]
    assert await order("_lastUpdated") == created
    assert await order("-_lastUpdated") == list(reversed(created))
    assert await order("_id") == sorted(created)
    assert await order("-_id") == sorted(created, reverse=True)

    b = await create(intake, patient("Baker", "Zoe"))
    a2 = await create(intake, patient("Adams", "Yann"))
    a1 = await create(intake, patient("adams", "Xavier"))
    c = await create(intake, patient("Clark", "Ann"))

    async def patients(sort: str) -> list[str]:
        # These four only: the test's services share one database, where outcomes' replica
        # holds the Observations' patient too.
        ids = ",".join((a1, a2, b, c))
        return match_ids(await search(intake, "/Patient", {"_sort": sort, "_id": ids}))

    assert await patients("given") == [c, a1, a2, b]
    assert await patients("-family,given") == [c, b, a1, a2]
    assert await patients("family,-given") == [a2, a1, b, c]


async def test_summary_count_and_total_modes(intake: httpx.AsyncClient):
    for name in ("Adams", "Baker", "Clark"):
        await create(intake, patient(name))
    counted = await search(intake, "/Patient", {"_summary": "count", "family": "a"})
    assert counted["total"] == 1 and "entry" not in counted
    assert ("_summary", "count") in query_of(link(counted, "self") or "")
    assert (await search(intake, "/Patient", {"_summary": "count"}))["total"] == 3
    no_total = await search(intake, "/Patient", {"_total": "none"})
    assert "total" not in no_total and len(no_total["entry"]) == 3
    accurate = await search(intake, "/Patient", {"_total": "accurate", "_count": "1"})
    assert accurate["total"] == 3 and len(accurate["entry"]) == 1


async def test_post_search_matches_get(intake: httpx.AsyncClient):
    a = await create(intake, patient("Chalmers", birthDate="1974-12-25"))
    await create(intake, patient("Chalmers", birthDate="1990-01-01"))
    await create(intake, patient("Windsor", birthDate="1974-12-25"))
    form = {"family": "chalmers", "birthdate": "lt1980", "_count": "5", "ignored": "x"}
    got = await search(intake, "/Patient", form)
    posted = await intake.post("/Patient/_search", data=form)
    assert posted.status_code == 200, posted.text
    posted_bundle = posted.json()
    assert match_ids(posted_bundle) == match_ids(got) == [a]
    assert posted_bundle["total"] == got["total"] == 1
    assert link(posted_bundle, "self") == link(got, "self")
    # Query string and form body combine.
    mixed = await intake.post("/Patient/_search?family=chalmers", data={"birthdate": "lt1980"})
    assert match_ids(mixed.json()) == [a]
    wrong = await intake.post("/Patient/_search", json=form)
    assert wrong.status_code == 415
    invalid = await intake.post("/Patient/_search", data={"birthdate": "notadate"})
    assert invalid.status_code == 400
    assert invalid.json()["issue"][0]["expression"] == ["birthdate"]


async def test_include_and_revinclude_has_member(outcomes: httpx.AsyncClient):
    m1 = await create(outcomes, observation(code="44261-6"))
    m2 = await create(outcomes, observation(code="89204-2"))
    gone = await create(outcomes, observation(code="1111-1"))
    panel = await create(
        outcomes,
        observation(
            code="77580-0",
            hasMember=[{"reference": f"Observation/{m}"} for m in (m1, m2, gone)]
            + [{"reference": "QuestionnaireResponse/qr1"}],
        ),
    )
    await outcomes.delete(f"/Observation/{gone}")

    included = await search(
        outcomes, "/Observation", {"_id": panel, "_include": "Observation:has-member"}
    )
    assert match_ids(included) == [panel]
    assert include_ids(included) == sorted([m1, m2])
    assert included["total"] == 1
    for entry in included["entry"]:
        res = entry["resource"]
        assert entry["fullUrl"] == f"{BASE}/Observation/{res['id']}"
    assert ("_include", "Observation:has-member") in query_of(link(included, "self") or "")
    typed = await search(
        outcomes,
        "/Observation",
        {"_id": panel, "_include": "Observation:has-member:Observation"},
    )
    assert include_ids(typed) == sorted([m1, m2])

    rev = await search(
        outcomes, "/Observation", {"_id": m1, "_revinclude": "Observation:has-member"}
    )
    assert match_ids(rev) == [m1] and include_ids(rev) == [panel]
    # A resource that is already a match is not repeated as an include.
    both = await search(
        outcomes,
        "/Observation",
        [("_id", f"{panel},{m1}"), ("_include", "Observation:has-member")],
    )
    assert sorted(match_ids(both)) == sorted([panel, m1]) and include_ids(both) == [m2]
    # The subject is a Patient of outcomes' replica (an Observation needs a known patient).
    subject = await search(outcomes, "/Observation", {"_id": m1, "_include": "Observation:subject"})
    assert match_ids(subject) == [m1] and include_ids(subject) == ["p1"]


async def test_include_iterate_follows_nested_panels(outcomes: httpx.AsyncClient):
    leaf = await create(outcomes, observation(code="44261-6"))
    middle = await create(
        outcomes, observation(code="77580-0", hasMember=[{"reference": f"Observation/{leaf}"}])
    )
    top = await create(
        outcomes, observation(code="77580-0", hasMember=[{"reference": f"Observation/{middle}"}])
    )
    once = await search(
        outcomes, "/Observation", {"_id": top, "_include": "Observation:has-member"}
    )
    assert include_ids(once) == [middle]
    nested = await search(
        outcomes, "/Observation", {"_id": top, "_include:iterate": "Observation:has-member"}
    )
    assert match_ids(nested) == [top] and include_ids(nested) == sorted([middle, leaf])
    assert ("_include:iterate", "Observation:has-member") in query_of(link(nested, "self") or "")
    up = await search(
        outcomes, "/Observation", {"_id": leaf, "_revinclude:iterate": "Observation:has-member"}
    )
    assert include_ids(up) == sorted([middle, top])
    await bad(
        outcomes,
        "/Observation",
        {"_include:deep": "Observation:has-member"},
        "_include:deep",
    )


async def test_included_types_not_stored_here_are_absent(
    scheduling: httpx.AsyncClient, intake: httpx.AsyncClient
):
    appt = await create(scheduling, appointment("p1"))
    med = await create(scheduling, medication_administration("p1"))
    for path, params, expected in (
        ("/Appointment", {"_include": "Appointment:patient"}, appt),
        ("/Appointment", {"_include": "Appointment:actor"}, appt),
        ("/MedicationAdministration", {"_include": "MedicationAdministration:patient"}, med),
    ):
        bundle = await search(scheduling, path, params)
        assert match_ids(bundle) == [expected] and include_ids(bundle) == []
    pid = await create(intake, patient())
    for params in (
        {"_revinclude": "Observation:subject"},
        {"_revinclude": "Appointment:patient"},
    ):
        bundle = await search(intake, "/Patient", params)
        assert match_ids(bundle) == [pid] and include_ids(bundle) == []
    await bad(intake, "/Patient", {"_revinclude": "Observation:nosuch"}, "_revinclude")


async def test_include_reaches_replicated_resources(scheduling: httpx.AsyncClient):
    """Patients replicated into scheduling can be included; a deleted replica cannot."""
    context = scheduling._transport.app.state.fhir  # type: ignore[attr-defined]
    writer = ReplicaWriter(context.store)
    with context.database.write() as session:
        for pid in ("p1", "p2"):
            writer.put_version(session, "Patient", pid, 1, {**patient(), "id": pid})
        writer.put_version(session, "Patient", "p2", 2, None)  # deleted at intake
    first = await create(scheduling, appointment("p1"))
    second = await create(scheduling, appointment("p2", "2026-03-03T09:00:00Z"))
    bundle = await search(scheduling, "/Appointment", {"_include": "Appointment:patient"})
    assert sorted(match_ids(bundle)) == sorted([first, second])
    assert include_ids(bundle) == ["p1"]
    include = [e for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert include[0]["fullUrl"] == f"{BASE}/Patient/p1"
    rev = await search(scheduling, "/Patient", {"_revinclude": "Appointment:patient"})
    assert match_ids(rev) == ["p1"] and include_ids(rev) == [first]
    actor = await search(
        scheduling, "/Appointment", {"_id": first, "_include": "Appointment:actor:Patient"}
    )
    assert include_ids(actor) == ["p1"]


async def test_forwarded_headers_shape_full_urls_and_links(
    service_client: Callable[..., httpx.AsyncClient],
):
    intake = service_client("intake", trusted_proxies=["127.0.0.1"])
    ids = sorted([await create(intake, patient()) for _ in range(3)])
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "ehr.example.org",
        "X-Forwarded-Prefix": "/intake",
    }
    bundle = await search(intake, "/Patient", {"_count": "2", "_sort": "_id"}, headers=headers)
    base = "https://ehr.example.org/intake/fhir"
    assert [e["fullUrl"] for e in bundle["entry"]] == [f"{base}/Patient/{i}" for i in ids[:2]]
    for item in bundle["link"]:
        assert item["url"].startswith(f"{base}/Patient?"), item
    assert dict(query_of(link(bundle, "next") or ""))["_offset"] == "2"
    posted = await intake.post(
        "/Patient/_search", data={"_count": "2", "_sort": "_id"}, headers=headers
    )
    assert posted.json()["entry"][0]["fullUrl"] == f"{base}/Patient/{ids[0]}"
    assert (link(posted.json(), "next") or "").startswith(f"{base}/Patient?")
    plain = await search(intake, "/Patient", {"_id": ids[0]})
    assert plain["entry"][0]["fullUrl"] == f"{BASE}/Patient/{ids[0]}"


async def test_search_in_batch_has_no_dead_next(intake: httpx.AsyncClient):
    ids = [await create(intake, patient()) for _ in range(2)]
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient?_count=2&_total=none"}}],
    }
    response = await intake.post("/", json=batch, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    inner = response.json()["entry"][0]["resource"]
    assert sorted(match_ids(inner)) == sorted(ids)
    assert link(inner, "next") is None
