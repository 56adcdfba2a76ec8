"""The CNN benchmark: time to accuracy, accuracy over seeds and throughput against a plain-PyTorch reference.

``cnn`` runs the recipes through the real trainer, ``reference`` is the plain-PyTorch peer. The
scikit-learn baselines and the results table and dashboard are a stage of their own,
:mod:`fmnist.baselines`; :mod:`fmnist.bench.cli` puts both under ``fmnist bench``.
"""
