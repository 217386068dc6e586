"""Bytes <-> arrays for each kind of input; they raise typed errors from `service.errors`."""
