"""The SQL of migration 0016_analytics, one module per part, frozen with it."""
