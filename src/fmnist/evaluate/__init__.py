"""Evaluation: figures, pictures and the report of a run on the test set."""
