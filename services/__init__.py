"""Business rules, one package per domain. Each package's `__init__` names what the rest of the
code (the API, the activities, other domains) may use of it; the rest is its own."""
