"""Benchmarks: the Fashion-MNIST README's scikit-learn baselines, result files and the offline dashboard.

Data flows one way: ``grid`` (the 143 configurations) -> ``estimators`` (today's scikit-learn
objects) -> ``sklearn_runner`` (guarded jobs, one child process each, run by ``worker``) ->
``results`` (the JSONL file, shared with the CNN benchmark) -> ``report`` (one HTML file).
Nothing here imports scikit-learn at import time.
"""
