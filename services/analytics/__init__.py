"""Analytics: the five reports of the API's Analytics section, from rollups that the database
keeps in the transaction of every event they count (migration 0016; definitions in
docs/analytics.md).

- `periods`: the common parameters (`parse_period`, `parse_uuid`) and their buckets.
- `overview`, `contacts`, `conversations`, `campaigns`, `automation`: one report each.
- `rollups` (the rollups, folding), `counters`, `active`, `response_times`: reading them
  (counters per bucket, distinct active contacts, exact percentiles).
- `rebuild`: recomputing everything from the raw tables; folding the deltas.
"""

from services.analytics.automation import automation_report
from services.analytics.campaigns import campaigns_report
from services.analytics.contacts import contacts_report
from services.analytics.conversations import conversations_report
from services.analytics.overview import overview_report
from services.analytics.periods import Period, parse_period, parse_uuid
from services.analytics.rebuild import fold_everything, rebuild

__all__ = [
    "Period",
    "automation_report",
    "campaigns_report",
    "contacts_report",
    "conversations_report",
    "fold_everything",
    "overview_report",
    "parse_period",
    "parse_uuid",
    "rebuild",
]
