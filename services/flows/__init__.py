"""Automation flows: per-contact journeys through a graph of steps.

- `flows`: create, read, update, delete a flow definition and its status rules
  (`get_flow`, `list_statement`, `public`); registers the "template still in use" check for
  active flows.
- `validation`: the rules of a flow document (`check_flow`, `check_graph`, `CheckedFlow`).

Running flows (activation, the Temporal interpreter, triggers, enrolment, executions) is not
here yet.
"""
