"""Deterministic orchestration, one module per durable process; `ids` names them all."""
