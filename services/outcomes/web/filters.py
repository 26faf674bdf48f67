"""The programme page's filters, passed on to `$programme-report` and its chart as the
operation's own inputs (`period`, `protocol`, `route`, `practice`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TOKEN = re.compile(r"^[A-Za-z0-9\-./|:]{1,100}$")


@dataclass(frozen=True)
class ProgrammeFilters:
    """What the clinician chose: the first dose between two days, a protocol, a route, a
    practice (each optional; the API checks them and keeps them within the caller's)."""

    since: str = ""
    until: str = ""
    protocol: str = ""
    route: str = ""
    practice: str = ""

    @classmethod
    def read(cls, query: QueryParams) -> ProgrammeFilters:
        """The filters of the page's query; malformed values are dropped, not passed on."""

        def get(name: str, pattern: re.Pattern[str]) -> str:
            value = query.get(name, "").strip()
            return value if pattern.match(value) else ""

        return cls(
            get("since", _DAY),
            get("until", _DAY),
            get("protocol", _TOKEN),
            get("route", _TOKEN),
            get("practice", _TOKEN),
        )

    def operation_inputs(self) -> list[tuple[str, str]]:
        """The operation's query parameters."""
        inputs = [("period", f"ge{self.since}")] if self.since else []
        inputs += [("period", f"le{self.until}")] if self.until else []
        for name in ("protocol", "route", "practice"):
            if getattr(self, name):
                inputs.append((name, getattr(self, name)))
        return inputs

    def page_query(self) -> str:
        """The same filters as the page's own query string (for its chart's address)."""
        chosen = {k: v for k, v in self.__dict__.items() if v}
        return urlencode(chosen)

    @property
    def any(self) -> bool:
        return any(self.__dict__.values())
