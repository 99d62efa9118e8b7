"""Benchmarks: each `bench_<topic>.py` has a `main()` printing figures against an in-run baseline."""
