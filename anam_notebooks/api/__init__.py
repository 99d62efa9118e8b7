"""The HTTP layer: clients, the one request path (auth, timeouts, retries, error mapping),
the concurrency limiter, drift-safe pagination and the background event-loop runner."""
