"""Contracts of the maintenance step that starts the workflows the database says are owed.

Some work is committed first and handed to Temporal after (the workflow reads the row): a
campaign's start or schedule change (`campaigns.temporal_synced_at` NULL), an account's
connect workflow (subscription still `pending`), its disconnect workflow (disconnected, token
still held). When Temporal was away or the process died in between, the row still says so;
this step, run by the maintenance schedule, carries it out once the row is older than a grace
period (younger ones may still be in the hands of the request that committed them). Starting
twice never runs anything twice: each workflow id is the row's, and an existing run counts as
the start done.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

# Activity name.
START_OWED = "maintenance.start_owed_workflows"

# A row this young may still be about to be started by the request that committed it.
GRACE_SECONDS = 120.0
# Rows looked at per kind and pass, oldest first (a Temporal call or two each).
LIMIT = 200


class StartOwedInput(BaseModel):
    grace_seconds: float = GRACE_SECONDS
    limit: int = LIMIT


class StartsReport(BaseModel):
    """One pass over one kind of row."""

    examined: int = 0
    started: int = 0  # no run was there: started now
    existing: int = 0  # the run was there after all (brought up to date where it needs)
    errors: int = 0  # left for the next pass (logged)


class OwedStartsReport(BaseModel):
    campaigns: StartsReport = Field(default_factory=StartsReport)
    account_connects: StartsReport = Field(default_factory=StartsReport)
    account_disconnects: StartsReport = Field(default_factory=StartsReport)
