"""Scripts that load, soak, overload and fuzz a running service (not tests: they report numbers)."""
