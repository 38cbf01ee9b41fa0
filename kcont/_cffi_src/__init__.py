"""C declarations of the kcont binding, one module per header (not installed)."""
