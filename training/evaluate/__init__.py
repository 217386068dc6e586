"""Evaluation commands: our served models against the classical baselines a user would otherwise use."""
