"""fmnist: a convolutional network for Fashion-MNIST and everything around it.

The package reads as the data flow: ``data`` -> ``models`` -> ``train`` -> ``evaluate`` ->
``predict`` / ``serve``, with ``bench`` and ``viz`` beside.
"""

__version__ = "0.1.0"
