"""The worker's maintenance Temporal Schedule (`mktx-maintenance`).

- `schedule`: `ensure_maintenance_schedule`, called at worker start.
"""
