"""The `session` and `attachment-reader` resources of python-example."""

import csv
from typing import Optional

import wit_world.exports.source
from componentize_py_types import Err
from wit_world.imports import log
from wit_world.imports.types import (
    Conversation,
    ConversationKind,
    Message,
    MessageKind,
    Page,
    Person,
    SourceError_InvalidConfig,
    SourceError_Permanent,
)

from app import parse_config

COLUMNS = ["id", "conversation", "sender_id", "sender_name", "sender_email", "sent_at_ms", "text"]


def person(row: dict) -> Person:
    return Person(
        id=row["sender_id"],
        display_name=row["sender_name"] or None,
        email=row["sender_email"] or None,
    )


class Session(wit_world.exports.source.Session):
    def __init__(self, rows: list, start: int, page_size: int):
        self.rows = rows
        self.position = start
        self.page_size = page_size
        self.described = set()
        self.participants = {}
        for row in rows:
            people = self.participants.setdefault(row["conversation"], {})
            people[row["sender_id"]] = person(row)

    @classmethod
    def open(cls, config_json: str, checkpoint: Optional[bytes]) -> "Session":
        config = parse_config(config_json)
        try:
            with open(config["path"], newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames != COLUMNS:
                    raise Err(SourceError_Permanent(
                        f"{config['path']}: the header must be {','.join(COLUMNS)}"))
                rows = list(reader)
        except OSError as e:
            raise Err(SourceError_InvalidConfig(
                f"cannot open {config['path']}: {e} (is the folder granted?)"))
        start = 0
        if checkpoint is not None:
            try:
                start = int(checkpoint.decode("ascii"))
            except ValueError:
                raise Err(SourceError_Permanent(f"checkpoint {checkpoint!r} is not a row count"))
            if start > len(rows):
                raise Err(SourceError_Permanent("the CSV file shrank below the checkpoint"))
        log.log(log.Level.INFO, "python example opened", [("rows", str(len(rows))), ("start", str(start))])
        return cls(rows, start, config["page_size"])

    def next_page(self) -> Page:
        end = min(self.position + self.page_size, len(self.rows))
        conversations = []
        messages = []
        for row in self.rows[self.position:end]:
            conv = row["conversation"]
            if conv not in self.described:
                self.described.add(conv)
                conversations.append(Conversation(
                    id=conv,
                    kind=ConversationKind.ROOM,
                    name=conv,
                    participants=list(self.participants[conv].values()),
                ))
            try:
                sent_at = int(row["sent_at_ms"])
            except ValueError:
                raise Err(SourceError_Permanent(f"row {row['id']}: sent_at_ms is not an integer"))
            original = ",".join(row[c] for c in COLUMNS).encode("utf-8")
            messages.append(Message(
                id=row["id"],
                conversation_id=conv,
                sender=person(row),
                sent_at=sent_at,
                kind=MessageKind.CHAT,
                relations=[],
                text=row["text"],
                html=None,
                attachments=[],
                original=original,
                properties=[("language", "python")],
            ))
        self.position = end
        return Page(
            conversations=conversations,
            messages=messages,
            checkpoint=str(end).encode("ascii"),
            complete=end >= len(self.rows),
        )

    def open_attachment(self, message_id: str, attachment_id: str) -> "AttachmentReader":
        raise Err(SourceError_Permanent("python-example has no deferred attachments"))


class AttachmentReader(wit_world.exports.source.AttachmentReader):
    def read(self, max_bytes: int) -> Optional[bytes]:
        return None
