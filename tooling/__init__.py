"""Developer tooling: throwaway servers for tests, benchmarks and `make run`."""
