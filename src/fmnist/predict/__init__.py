"""Use a trained model on pictures: photo preprocessing (numpy + Pillow only) and prediction.

Import from the submodules: ``fmnist.predict.preprocess_photo`` (no torch) and
``fmnist.predict.predict``. This package file stays empty so importing the preprocessing never
pulls in torch.
"""
