"""Benchmarks: scripts that print figures beside a baseline (`llmos bench …`)."""
