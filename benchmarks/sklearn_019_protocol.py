"""Run two Table 3 rows under scikit-learn 0.19.0 itself, the release the paper's benchmark ran on.

Table 3 of arXiv:1708.07747 gives DecisionTreeClassifier(entropy, depth 10) 0.798 and
GaussianNB(priors=[0.1]*10) 0.511; today's scikit-learn gives 0.811 and 0.570 under the same protocol
(benchmarks/RESULTS.md, "Table 3's family-best rows at full size"). This script repeats the protocol of
zalandoresearch/fashion-mnist ``benchmark/runner.py`` (StandardScaler fitted on the 60,000 training images,
an unseeded shuffle per repeat, fit on all of them, accuracy on the 10,000 test images) with no fmnist
import, so that it runs on the Python 3.6 for which 0.19.0 has wheels, with the numpy and scipy of 2017:

    python3.6 -m venv sk019 && sk019/bin/pip install numpy==1.13.3 scipy==0.19.1 scikit-learn==0.19.0
    sk019/bin/python benchmarks/sklearn_019_protocol.py [DATA_DIR]      # about 1 minute on one core
    .venv/bin/python benchmarks/sklearn_019_protocol.py [DATA_DIR]      # the same under today's versions

DATA_DIR holds the four official .gz files (default: Debian's /usr/share/datasets/fashion-mnist).
"""

import gzip
import sys
import time

import numpy as np
import scipy
import sklearn
from sklearn import preprocessing
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils import shuffle

ROWS = {  # name: (the Table 3 configuration, repeats, published accuracy)
    "GaussianNB(priors=[0.1]*10)": (lambda: GaussianNB(priors=[0.1] * 10), 3, 0.511),
    "DecisionTreeClassifier(entropy, max_depth=10, best)": (
        lambda: DecisionTreeClassifier(criterion="entropy", max_depth=10, splitter="best"),
        2,
        0.798,
    ),
}


def load(folder, kind):
    """The README's mnist_reader.load_mnist: raw uint8 pixels, (n, 784)."""
    with gzip.open(f"{folder}/{kind}-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read(), dtype=np.uint8, offset=8)
    with gzip.open(f"{folder}/{kind}-images-idx3-ubyte.gz") as fh:
        images = np.frombuffer(fh.read(), dtype=np.uint8, offset=16).reshape(len(labels), 784)
    return images, labels


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    x, y = load(folder, "train")
    xt, yt = load(folder, "t10k")
    scaler = preprocessing.StandardScaler().fit(x.astype(np.float64))
    x, xt = scaler.transform(x.astype(np.float64)), scaler.transform(xt.astype(np.float64))
    print(
        f"python {sys.version.split()[0]}, scikit-learn {sklearn.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}",
        flush=True,
    )
    for name, (make, repeats, published) in ROWS.items():
        for repeat in range(repeats):
            xs, ys = shuffle(x, y)  # unseeded, as the runner does
            t0 = time.process_time()
            model = make().fit(xs, ys)
            fit_s = time.process_time() - t0
            print(
                f"{name}: repeat {repeat}: accuracy {model.score(xt, yt):.4f} (published {published}), "
                f"fit {fit_s:.1f} CPU s",
                flush=True,
            )


if __name__ == "__main__":
    main()
