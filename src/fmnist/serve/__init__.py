"""The HTTP service and its web page: ``create_app`` in :mod:`fmnist.serve.app`, run by ``fmnist serve``."""
