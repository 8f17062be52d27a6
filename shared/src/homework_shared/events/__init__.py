"""The public event contract: typed, versioned homework events as CloudEvents over Kafka.

An outside subscriber needs only this package (``pip install homework-shared``)::

    from homework_shared.events import decode, EventDecodeError, CompletionRecorded

    env = decode(record.headers, record.value)   # Envelope with .data typed
    if isinstance(env.data, CompletionRecorded): ...
"""

from homework_shared.events.base import TOLERANT, ContractModel, HomeworkEvent, Stream
from homework_shared.events.envelope import (
    Envelope,
    EventDecodeError,
    KafkaRecord,
    decode,
    encode,
    envelope,
    new_event_id,
    without_free_text,
)
from homework_shared.events.models import (
    EVENT_CLASSES,
    EVENTS_BY_TYPE,
    AdherenceAlertRaised,
    AssignmentCancelled,
    AssignmentCreated,
    AssignmentEnded,
    AssignmentPaused,
    AssignmentResumed,
    AssignmentRevised,
    AssignmentSnapshot,
    ClientErasureCompleted,
    ClientErasureRequested,
    CompletionRecorded,
    InsightSummaryGenerated,
    OccurrenceMissed,
    OccurrenceRef,
    OccurrenceSkipped,
    ReminderCancelled,
    ReminderScheduled,
    ReminderSent,
    ReminderSnoozed,
)
from homework_shared.events.topics import Topics
from homework_shared.events.values import (
    Barrier,
    Channel,
    CompletionData,
    CompletionStatus,
    ExposureStep,
    HomeworkKind,
    OnceSchedule,
    RecurringSchedule,
    ReminderWish,
    Resource,
    Schedule,
    Target,
)

__all__ = [
    "EVENTS_BY_TYPE",
    "EVENT_CLASSES",
    "TOLERANT",
    "AdherenceAlertRaised",
    "AssignmentCancelled",
    "AssignmentCreated",
    "AssignmentEnded",
    "AssignmentPaused",
    "AssignmentResumed",
    "AssignmentRevised",
    "AssignmentSnapshot",
    "Barrier",
    "Channel",
    "ClientErasureCompleted",
    "ClientErasureRequested",
    "CompletionData",
    "CompletionRecorded",
    "CompletionStatus",
    "ContractModel",
    "Envelope",
    "EventDecodeError",
    "ExposureStep",
    "HomeworkEvent",
    "HomeworkKind",
    "InsightSummaryGenerated",
    "KafkaRecord",
    "OccurrenceMissed",
    "OccurrenceRef",
    "OccurrenceSkipped",
    "OnceSchedule",
    "RecurringSchedule",
    "ReminderCancelled",
    "ReminderScheduled",
    "ReminderSent",
    "ReminderSnoozed",
    "ReminderWish",
    "Resource",
    "Schedule",
    "Stream",
    "Target",
    "Topics",
    "decode",
    "encode",
    "envelope",
    "new_event_id",
    "without_free_text",
]
