"""Campaigns.

- `campaigns`: create, read, update, and the status rules (`require_status`, `STARTED`).
- `starts`: `start_campaign` and `update_campaign` (each owning its commit and the Temporal
  call), and `sync_owed`, which the maintenance schedule runs for what Temporal could not take.
- `runs`: the campaign's Temporal run from the API: reschedule, pause, resume, progress.
- `delivery`, `batches`: what the campaign activities do in the database: the occurrence's
  snapshot, claiming a batch through the one send path, settling recipients.
- `test_sends`: test sends, durable, through the one send path.
- `metrics`, `links`: metrics and tracked links (`/r/{code}`).
- `recipients`: the recipients list (a page, or all of it streamed as CSV), each row dated by
  the clauses the metrics count with.
"""
