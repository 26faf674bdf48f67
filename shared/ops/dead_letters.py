"""A consuming service's dead letters: list them, show one, redrive them once fixed.

A dead letter belongs to the consumer group named in its `dlq_consumer` header: scheduling and
outcomes both consume `fhir.Patient`, and each sees and redrives only its own. Redriving
applies the event through the consumer's own path (`prepare`, then `ConsumerRunner.apply`, which
records the processed event in the same transaction), so an event applied already is skipped.
What a full redrive got through is committed as the offsets of the group
`<consumer group>.dlq-redrive` on the dead-letter topics: the next redrive starts after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from shared.events import kafka
from shared.events.consumer import ConsumerRunner
from shared.events.describe import describe
from shared.events.envelope import EnvelopeError, parse_event
from shared.events.outbox import current_traceparent, valid_traceparent
from shared.fhir import exact_json
from shared.settings import ServiceSettings

DLQ_SUFFIX = ".dlq"


class DeadLetterError(Exception):
    """A request the dead-letter commands cannot answer (unknown topic or id)."""


@dataclass
class DeadLetter:
    """One message of a dead-letter topic, as consumed."""

    record: ConsumerRecord
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, record: ConsumerRecord) -> DeadLetter:
        headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or () if v}
        return cls(record, headers)

    @property
    def coordinates(self) -> str:
        """`<dead-letter topic>:<partition>:<offset>`, unique even for unreadable messages."""
        return f"{self.record.topic}:{self.record.partition}:{self.record.offset}"

    def envelope(self) -> dict[str, Any] | None:
        """The event's attributes as sent (None when the message is not a JSON object)."""
        try:
            decoded = exact_json.loads(self.record.value or b"")
        except (ValueError, RecursionError):
            return None
        return decoded if isinstance(decoded, dict) else None

    @property
    def event_id(self) -> str | None:
        envelope = self.envelope() or {}
        value = envelope.get("id")
        return value if isinstance(value, str) else None

    @property
    def id(self) -> str:
        """What `--id` takes: the event id, or the coordinates of an unreadable message."""
        return self.event_id or self.coordinates

    def summary(self, redriven: bool) -> dict[str, Any]:
        """What `dlq list` shows: where, why and which event, never the resource."""
        envelope = self.envelope() or {}
        h = self.headers
        return {
            "id": self.id,
            "topic": self.record.topic,
            "partition": self.record.partition,
            "offset": self.record.offset,
            "sourceTopic": h.get("dlq_source_topic"),
            "sourcePartition": _int(h.get("dlq_source_partition")),
            "sourceOffset": _int(h.get("dlq_source_offset")),
            "consumer": h.get("dlq_consumer"),
            "attempts": _int(h.get("dlq_attempts")),
            "error": h.get("dlq_error"),
            "eventId": self.event_id,
            "eventType": _text(envelope.get("type")),
            "subject": _text(envelope.get("subject")),
            "versionId": _text(envelope.get("versionid")),
            "redriven": redriven,
        }

    def detail(self, redriven: bool) -> dict[str, Any]:
        """What `dlq show` prints: the summary, the headers and the envelope without `data`."""
        envelope = self.envelope()
        if envelope is not None:
            envelope = {k: v for k, v in envelope.items() if k != "data"}
        return {**self.summary(redriven), "headers": self.headers, "envelope": envelope}


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


class DeadLetters:
    """The dead letters of one service's consumer group, on the broker in `settings`."""

    def __init__(self, settings: ServiceSettings, consumer: ConsumerRunner) -> None:
        self.settings = settings
        self.consumer = consumer
        self.redrive_group = f"{consumer.name}.dlq-redrive"

    @property
    def timeout(self) -> float:
        return self.settings.kafka_request_timeout_ms / 1000

    def topics(self, topic: str | None) -> list[str]:
        """The dead-letter topics asked for: all of the consumer's, or the one named (with or
        without the prefix and the `.dlq` suffix)."""
        sources = sorted(self.consumer.handlers)
        if topic is None:
            return [f"{t}{DLQ_SUFFIX}" for t in sources]
        name = topic.removesuffix(DLQ_SUFFIX)
        for candidate in (name, f"{self.settings.topic_prefix}{name}"):
            if candidate in sources:
                return [f"{candidate}{DLQ_SUFFIX}"]
        known = ", ".join(sources) or "none"
        raise DeadLetterError(f"{topic} is not a topic this service consumes (it consumes {known})")

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[AIOKafkaConsumer]:
        client = kafka.consumer(self.settings, group=self.redrive_group)
        await asyncio.wait_for(client.start(), self.timeout)
        try:
            yield client
        finally:
            await client.stop()

    async def _partitions(
        self, client: AIOKafkaConsumer, topics: list[str]
    ) -> list[TopicPartition]:
        await client.topics()
        return [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(client.partitions_for_topic(topic) or ())
        ]

    async def _committed(
        self, client: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return {tp: await client.committed(tp) or 0 for tp in partitions}

    async def _read(
        self, client: AIOKafkaConsumer, starts: dict[TopicPartition, int]
    ) -> list[DeadLetter]:
        """Every message of the partitions from the given offsets to their current end."""
        partitions = list(starts)
        if not partitions:
            return []
        client.assign(partitions)
        for tp, offset in starts.items():
            client.seek(tp, offset)
        ends = await client.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + max(self.timeout, 10)
        while True:
            # The dev broker's ListOffsets may stop short of the last batch: the high-water too.
            positions = [await client.position(tp) for tp in partitions]
            if all(
                pos >= max(ends[tp], client.highwater(tp) or 0)
                for pos, tp in zip(positions, partitions, strict=True)
            ):
                break
            if time.monotonic() > deadline:
                raise DeadLetterError("the broker did not deliver the dead-letter topics in time")
            for messages in (await client.getmany(timeout_ms=200)).values():
                records.extend(messages)
        records.sort(key=lambda r: (r.topic, r.partition, r.offset))
        return [DeadLetter.of(r) for r in records]

    def _ours(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        return [d for d in letters if d.headers.get("dlq_consumer") == self.consumer.name]

    async def listing(self, topic: str | None) -> list[dict[str, Any]]:
        """Summaries of this consumer's dead letters, oldest first per partition."""
        async with self._client() as client:
            partitions = await self._partitions(client, self.topics(topic))
            committed = await self._committed(client, partitions)
            letters = self._ours(await self._read(client, dict.fromkeys(partitions, 0)))
        return [d.summary(d.record.offset < committed[_tp(d)]) for d in letters]

    async def show(self, topic: str | None, letter_id: str) -> dict[str, Any]:
        """One dead letter in detail (the first if the id was dead-lettered twice)."""
        async with self._client() as client:
            partitions = await self._partitions(client, self.topics(topic))
            committed = await self._committed(client, partitions)
            letters = self._ours(await self._read(client, dict.fromkeys(partitions, 0)))
        for letter in letters:
            if letter_id in (letter.id, letter.coordinates):
                return letter.detail(letter.record.offset < committed[_tp(letter)])
        raise DeadLetterError(f"no dead letter of {self.consumer.name} has id {letter_id}")

    async def redrive(self, topic: str | None, letter_id: str | None) -> dict[str, Any]:
        """Apply the dead letters not redriven yet (or the one with `letter_id`, wherever it
        is); returns what happened to each."""
        report: dict[str, Any] = {
            "redriven": [],
            "alreadyApplied": [],
            "failed": [],
            "unreadable": [],
        }
        async with self._client() as client:
            partitions = await self._partitions(client, self.topics(topic))
            starts = (
                dict.fromkeys(partitions, 0)
                if letter_id is not None
                else await self._committed(client, partitions)
            )
            ends = {tp: starts[tp] for tp in partitions}
            blocked: set[TopicPartition] = set()
            letters = await self._read(client, starts)
            for letter in letters:
                tp = _tp(letter)
                if tp not in blocked:
                    ends[tp] = letter.record.offset + 1
                mine = letter.headers.get("dlq_consumer") == self.consumer.name
                if not mine or (
                    letter_id is not None and letter_id not in (letter.id, letter.coordinates)
                ):
                    continue
                outcome, why = await self._apply(letter)
                entry = {"id": letter.id, "at": letter.coordinates, "subject": _subject(letter)}
                if why:
                    entry["error"] = why
                report[outcome].append(entry)
                if outcome == "failed" and tp not in blocked:
                    # Later letters of this partition are tried, but the cursor stays here, so
                    # the next redrive comes back to this one (what got through is skipped).
                    blocked.add(tp)
                    ends[tp] = letter.record.offset
            if letter_id is None:
                offsets = {tp: OffsetAndMetadata(o, "") for tp, o in ends.items() if o > starts[tp]}
                if offsets:
                    await client.commit(offsets)
            elif not any(report.values()):
                raise DeadLetterError(f"no dead letter of {self.consumer.name} has id {letter_id}")
        return report

    async def _apply(self, letter: DeadLetter) -> tuple[str, str | None]:
        """Apply one dead letter as the consumer would: (outcome, error)."""
        try:
            event = parse_event(letter.record.value or b"")
        except EnvelopeError as exc:
            return "unreadable", str(exc)
        # Sequence numbers count per partition: the one it was dead-lettered from.
        event = event.model_copy(
            update={"partition": _int(letter.headers.get("dlq_source_partition"))}
        )
        source = letter.headers.get("dlq_source_topic") or letter.record.topic.removesuffix(
            DLQ_SUFFIX
        )
        if source not in self.consumer.handlers:
            return "unreadable", f"{source} is not a topic this service consumes"
        token = current_traceparent.set(valid_traceparent(letter.headers.get("traceparent")))
        try:
            prepare = self.consumer.prepare
            prepared = event if prepare is None else await prepare(event)
            applied = await asyncio.to_thread(self.consumer.apply, source, prepared)
        except Exception as exc:
            return "failed", describe(exc)
        finally:
            current_traceparent.reset(token)
        return ("redriven" if applied else "alreadyApplied"), None


def _tp(letter: DeadLetter) -> TopicPartition:
    return TopicPartition(letter.record.topic, letter.record.partition)


def _subject(letter: DeadLetter) -> str | None:
    return _text((letter.envelope() or {}).get("subject"))
