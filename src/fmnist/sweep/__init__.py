"""Sweeps: many trainings from one TOML plan, on Dask."""
