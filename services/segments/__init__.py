"""Segments: conditions on contacts compiled to one SQL statement.

- `segments`: create, read, update, delete, preview; `compile_segment` (used by a campaign's
  recipient snapshot).
- `sql`: the compiler; `CONTACTS`, the table the compiled statements select from.
"""
