"""``fmnist viz``: pictures of the data. ``embed`` draws 2-D maps (the sprite is ``fmnist data sprite``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fmnist.cli import SEED, add_command, add_group
from fmnist.data.cli import add_source_args, load_or_fetch
from fmnist.errors import ConfigError

# The maps (scikit-learn, matplotlib, torch) are imported inside the command: `fmnist --help` stays light.


def register(sub) -> None:
    vsub = add_group(sub, "viz")
    embed = add_command(vsub, "embed", cmd_embed)
    add_source_args(embed)
    embed.add_argument("--method", default="pca", help="pca, tsne or umap")
    embed.add_argument("--features", default="pixels", help="pixels, or cnn (needs --run)")
    embed.add_argument("--run", type=Path, default=None, help="run folder (or model.pt) for --features cnn")
    embed.add_argument(
        "--n", type=int, default=None, help="images on the map (default: per method, see above)"
    )
    embed.add_argument("--split", choices=("train", "t10k"), default="train")
    embed.add_argument("--seed", type=SEED, default=0, help="seeds the subsample and the embedding")
    embed.add_argument("--thumbnails", action="store_true", help="draw sample images at points far apart")
    embed.add_argument(
        "--threads", type=int, default=0, help="CPU threads (0: all cores; 1 is faster on a busy machine)"
    )
    embed.add_argument("--out", type=Path, default=Path("maps"), help="output folder")


def cmd_embed(args) -> int:
    """a 2-D map coloured by class (PNG) and its coordinates (CSV)

    Map the images to 2-D with PCA, t-SNE or UMAP, from raw pixels or from a trained model's penultimate
    layer. t-SNE and UMAP run on PCA-50. Without --n: 10,000 images for PCA, 5,000 for t-SNE and UMAP (a
    random subsample; a few minutes on 2 cores). Writes DATASET-SPLIT-FEATURES-METHOD.png, .csv (index,
    label, class, x, y) and .json (what was drawn). --dataset both draws Fashion-MNIST and MNIST side by
    side (it needs the MNIST files).

    Example: fmnist viz embed --method tsne --features cnn --run runs/first --thumbnails --out maps/
    """
    from fmnist.models.inference import resolve_model_path
    from fmnist.viz.embed import MapRequest, write_maps

    req = MapRequest(args.split, args.method, args.features, args.n, args.seed, None, args.threads)
    if args.features == "cnn":
        if args.run is None:
            raise ConfigError("--features cnn needs --run RUN_DIR (a folder written by `fmnist train`)")
        # a missing run is an error before any data is read
        req = dataclasses.replace(req, run=resolve_model_path(args.run))
    elif args.run is not None:
        raise ConfigError("--run is used only with --features cnn")
    names = ["fashion", "mnist"] if args.dataset == "both" else [args.dataset]
    if len(names) > 1 and args.data_dir is not None:
        raise ConfigError(
            "--data-dir names one data set's folder; with --dataset both each is found in the cache"
        )
    datasets = [load_or_fetch(name, args.data_dir) for name in names]
    for path in write_maps(datasets, req, args.out, args.thumbnails):
        print(path)
    return 0
