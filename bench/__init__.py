"""Benchmarks: each `bench/<name>.py` with a `main()` prints its figures; `make bench` runs them."""
