"""Helpers for kcont's own test suites, not API: the pure-Python routing
model the suites use as their oracle, and the per-key trails the probe
tests read.  Importable without the compiled binding."""
