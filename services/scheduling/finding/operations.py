"""The declarations of `$find`, `$hold` and `$book` on Appointment."""

from __future__ import annotations

from services.scheduling.finding.find import find_operation
from services.scheduling.finding.hold_book import book, hold
from shared.fhir.operations import Operation, OperationParam

_GIVEN = OperationParam(
    "appointment",
    "Appointment",
    min=1,
    documentation="A proposal from $find (or, for $book, a hold)",
)
_RETURN = OperationParam("return", "Appointment", min=1, documentation="As stored")


def hold_operation() -> Operation:
    return Operation(
        name="hold",
        levels=frozenset({"type"}),
        methods=frozenset({"POST"}),
        affects_state=True,
        handler=hold,
        description=(
            "Hold a proposed Appointment: stored as pending, its slots busy, until the "
            "hold-expires extension's time (setting SCHEDULING_HOLD_MINUTES); a lapsed hold "
            "holds nothing and is cancelled by the next $hold or $book of its participants, "
            "or by the hold sweeper (SCHEDULING_HOLD_SWEEP_INTERVAL_S), which frees its slots."
        ),
        scope="system/Appointment.c",
        inputs=(_GIVEN,),
        outputs=(_RETURN,),
    )


def book_operation() -> Operation:
    return Operation(
        name="book",
        levels=frozenset({"type"}),
        methods=frozenset({"POST"}),
        affects_state=True,
        handler=book,
        description=(
            "Book a proposed Appointment, or a held one (by its id): status booked, under the "
            "booking rules, which answer 409 when its slot or a participant went meanwhile. "
            "Booking a held one updates it, so it needs system/Appointment.u as well; a hold "
            "someone cancelled is not booked (409), one cancelled because it lapsed is."
        ),
        scope="system/Appointment.c",
        inputs=(_GIVEN,),
        outputs=(_RETURN,),
    )


def finding_operations() -> tuple[Operation, ...]:
    return (find_operation(), hold_operation(), book_operation())
