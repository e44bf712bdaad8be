"""Per-merchant API request counters, shared by every API process through PostgreSQL.

UNLOGGED: a counter lost in a crash costs at most a minute of leniency, and the table stays off
the WAL on the hot path of every request.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, String, Table
from sqlmodel import SQLModel

RATE_LIMIT_TABLE = Table(
    "api_rate_limits",
    SQLModel.metadata,
    Column("merchant_id", String(128), primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("hits", Integer, nullable=False),
    prefixes=["UNLOGGED"],
)
