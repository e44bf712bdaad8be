"""The worker's maintenance: its Temporal Schedule (`mktx-maintenance`) and what only it does.

- `schedule`: `ensure_maintenance_schedule`, called at worker start.
- `retention`: `prune_retained`, what is past its retention window deleted in bounded batches.
"""
