"""Catalog tables. Tensors live in content-addressed files; these rows only point at them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stored in PRAGMA user_version. Change a table only together with a new step in migrations.py,
# whose last version this must equal (a test checks both agree).
SCHEMA_VERSION = 1


class JSONText(TypeDecorator):
    """JSON in a TEXT column, readable with the sqlite3 shell and stable across SQLite builds."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        # default=str keeps provenance such as Paths in configs instead of failing a finished run.
        return None if value is None else json.dumps(value, sort_keys=True, default=str)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        return None if value is None else json.loads(value)


class UTCDateTime(TypeDecorator):
    """ISO-8601 text with an explicit offset, so reads come back timezone-aware in UTC."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the registry stores aware datetimes only")
        return value.astimezone(timezone.utc).isoformat()

    def process_result_value(self, value: str | None, dialect: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value).astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class PromptRow(Base):
    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(500))
    backbone: Mapped[str] = mapped_column(String(500))
    fingerprint: Mapped[dict] = mapped_column(JSONText)
    d: Mapped[int] = mapped_column(Integer)
    m: Mapped[int] = mapped_column(Integer)
    # Ordered "name@version" refs; order matters because attention scores are indexed by it.
    sources: Mapped[list] = mapped_column(JSONText)
    attention: Mapped[str | None] = mapped_column(String(220), nullable=True)
    variant: Mapped[str] = mapped_column(String(100))
    parent: Mapped[str | None] = mapped_column(String(220), nullable=True)
    config: Mapped[dict] = mapped_column(JSONText)
    metrics: Mapped[dict] = mapped_column(JSONText)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("kind", "name", "version", name="uq_prompts_kind_name_version"),
        CheckConstraint("kind IN ('source', 'target', 'attention')", name="ck_prompts_kind"),
        CheckConstraint("version >= 1", name="ck_prompts_version"),
        # Blob garbage collection asks "does any row still use this sha?" on every removal.
        Index("ix_prompts_sha256", "sha256"),
    )


class EvaluationRow(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String(50))
    metrics: Mapped[dict] = mapped_column(JSONText)
    examples: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CacheRow(Base):
    """Small derived blobs (e.g. attention weights per prompt version) kept inside the catalog."""

    __tablename__ = "cache"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


prompts = PromptRow.__table__
evaluations = EvaluationRow.__table__
cache = CacheRow.__table__
metadata = Base.metadata
