"""Every registered model: shapes, features/classifier split, finite outputs, gradients everywhere.

Also the tutorial net against the README's "2 Conv+pooling" description, every parameter count against
a count written out by hand from the layer shapes, the registry's errors and a model.pt round trip
through ``load_model``. CPU only, small widths: a few seconds in all.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fmnist.errors import ConfigError
from fmnist.models import MODELS, build_model, load_model, param_count, preprocess
from fmnist.models.checkpoint import model_record, save
from fmnist.train.config import PRESETS, make_config

# Knobs that keep every model small enough for a CPU test; a model missing here is built with its defaults.
SMALL = {"tutorial": {}, "fastcnn": {"width": 4}, "resnet": {"width": 4, "depth": 1}}


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=sorted(MODELS))
def model_name(request) -> str:
    return request.param


def small(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes=10, **SMALL.get(name, {}))


def batch(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


# Parameter counts written out by hand from the architectures' descriptions (nets.py / resnet.py docstrings,
# the README's "2 Conv+pooling" net), not read from the code: a changed layer changes the count.
TUTORIAL_PARAMS = (
    (1 * 32 * 5 * 5 + 32)  # conv 5x5, 1 -> 32, with bias
    + (32 * 64 * 5 * 5 + 64)  # conv 5x5, 32 -> 64, with bias
    + (7 * 7 * 64 * 1024 + 1024)  # dense from the 7x7x64 pooled maps to 1024
    + (1024 * 10 + 10)  # dense 1024 -> 10
)


def fastcnn_params(w: int, classes: int = 10, depth: int = 1) -> int:
    """FastCNN of width w: bias-free 3x3 convs 1 -> w -> 2w -> 2w -> 4w (then depth - 1 more 4w -> 4w), each
    followed by a BatchNorm (weight and bias per channel), then a Linear from the max and average pools
    concatenated (2 * 4w)."""
    convs = 3 * 3 * (1 * w + w * 2 * w + 2 * w * 2 * w + 2 * w * 4 * w + (depth - 1) * 4 * w * 4 * w)
    norms = 2 * (w + 2 * w + 2 * w + 4 * w + (depth - 1) * 4 * w)
    return convs + norms + (2 * 4 * w) * classes + classes


def resnet_params(w: int, d: int, classes: int = 10) -> int:
    """Pre-activation ResNet: a bias-free 3x3 stem 1 -> w; stages of widths w, 2w, 4w with d blocks each
    (BN, 3x3 conv, BN, 3x3 conv; the first block of stages 2 and 3 halves the size and doubles the width,
    with a bias-free 1x1 conv shortcut); a final BN and a Linear from the 4w pooled features."""
    total = 3 * 3 * 1 * w
    cin = w
    for stage, cout in enumerate((w, 2 * w, 4 * w)):
        for block in range(d):
            total += 2 * cin + 3 * 3 * cin * cout + 2 * cout + 3 * 3 * cout * cout
            if stage > 0 and block == 0:
                total += cin * cout
            cin = cout
    return total + 2 * cin + cin * classes + classes


def test_hand_counts_match_the_documented_figures():
    """The hand formulas give the figures the docs quote (README, nets.py, resnet.py)."""
    assert TUTORIAL_PARAMS == 3_274_634
    assert fastcnn_params(16) == 33_978 and fastcnn_params(24) == 75_154 and fastcnn_params(32) == 132_458
    assert fastcnn_params(24, depth=2) == 158_290
    assert 2.7e6 < resnet_params(64, 2) < 2.9e6  # "about 2.8M parameters"


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("tutorial", {}, TUTORIAL_PARAMS),
        *[("fastcnn", {"width": w}, fastcnn_params(w)) for w in (1, 4, 8, 16, 24)],
        *[("fastcnn", {"width": w, "depth": d}, fastcnn_params(w, depth=d)) for w, d in ((4, 3), (24, 2))],
        *[
            ("resnet", {"width": w, "depth": d}, resnet_params(w, d))
            for w, d in ((4, 1), (4, 2), (8, 1), (8, 2))
        ],
        ("fastcnn", {}, fastcnn_params(16)),  # the defaults: width 16
        ("resnet", {}, resnet_params(64, 2)),  # width 64, depth 2
        ("fastcnn", {"width": None}, fastcnn_params(16)),  # None means the model's default
    ],
)
def test_parameter_counts_equal_the_hand_counts(name, kwargs, expected):
    assert param_count(build_model(name, **kwargs)) == expected


def test_every_registered_model_is_covered_by_the_small_table():
    assert set(SMALL) == set(MODELS), "add the new model's small knobs to SMALL"


def test_forward_and_features_shapes_and_split(model_name):
    model = small(model_name).eval()
    x = batch()
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
    assert logits.shape == (6, 10)
    assert feats.ndim == 2 and feats.shape[0] == 6
    assert feats.shape[1] == model.classifier.in_features
    assert isinstance(model.classifier, nn.Linear) and model.classifier.out_features == 10
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
    with torch.no_grad():
        assert torch.equal(model.classifier(feats), logits)


def test_channels_last_gives_the_same_logits(model_name):
    model = small(model_name).eval()
    x = batch()
    with torch.no_grad():
        plain = model(x)
        nhwc = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(nhwc, plain, rtol=1e-4, atol=1e-5)


def test_every_parameter_gets_a_gradient(model_name):
    model = small(model_name).train()
    loss = nn.functional.cross_entropy(model(batch(8)), torch.arange(8) % 10)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{model_name}.{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{model_name}.{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{model_name}.{name} has an all-zero gradient"


def test_num_classes_is_honoured(model_name):
    model = build_model(model_name, num_classes=3, **SMALL.get(model_name, {})).eval()
    with torch.no_grad():
        assert model(batch(2)).shape == (2, 3)


def test_tutorial_net_is_the_readme_two_conv_pooling_net():
    model = build_model("tutorial")
    assert param_count(model) == TUTORIAL_PARAMS
    layers = [m for m in model.modules() if not isinstance(m, (nn.Sequential, type(model)))]
    kinds = [type(m).__name__ for m in layers]
    assert kinds == [
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    conv1, conv2 = (m for m in layers if isinstance(m, nn.Conv2d))
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size) == (1, 32, (5, 5))
    assert (conv2.in_channels, conv2.out_channels, conv2.kernel_size) == (32, 64, (5, 5))
    assert conv1.padding == conv2.padding == (2, 2)  # "same" convolutions: 28 -> 14 -> 7 after the pools
    assert all(m.kernel_size == 2 for m in layers if isinstance(m, nn.MaxPool2d))
    dense, out = (m for m in layers if isinstance(m, nn.Linear))
    assert (dense.in_features, dense.out_features) == (7 * 7 * 64, 1024)
    assert (out.in_features, out.out_features) == (1024, 10)
    assert next(m for m in layers if isinstance(m, nn.Dropout)).p == pytest.approx(0.4)


def test_fast_default_is_small():
    """The CPU default stays at 'a few hundred thousand parameters at most': width 16, 34k parameters."""
    assert MODELS["fastcnn"].defaults == {"width": 16, "depth": 1}
    assert param_count(build_model("fastcnn")) == fastcnn_params(16) < 300_000
    assert "34k parameters" in MODELS["fastcnn"].summary and round(fastcnn_params(16), -3) == 34_000


def test_fastcnn_normalises_after_pooling():
    """BatchNorm and ReLU run on pooled maps (14x14, 14x14, 7x7, 7x7): the order that makes it 24% faster."""
    model = build_model("fastcnn", width=16).eval()
    sizes: list[tuple[int, int]] = []
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.register_forward_hook(lambda _m, inp, _out: sizes.append(tuple(inp[0].shape[-2:])))
    model(torch.zeros(2, 1, 28, 28))
    assert sizes == [(14, 14), (14, 14), (7, 7), (7, 7)]


# The README's preset table, written out: fastcnn width, depth, epochs, flips, crop padding, erasing probability;
# every CPU recipe whitens its first layer.
README_CPU_PRESETS = {
    "cpu-20s": (16, 2, 3, False, 0, 0.0),
    "cpu-60s": (16, 2, 6, False, 0, 0.0),
    "cpu-fast": (24, 2, 16, True, 1, 0.25),
    "cpu-best": (24, 2, 24, True, 1, 0.25),
    "cpu-60s-v1": (16, 1, 6, False, 0, 0.0),
    "cpu-fast-v1": (24, 1, 20, True, 0, 0.0),
    "cpu-20s-avx2": (16, 1, 1, False, 0, 0.0),
    "cpu-60s-avx2": (16, 1, 3, False, 0, 0.0),
    "cpu-fast-avx2": (16, 1, 16, True, 0, 0.0),
}


@pytest.mark.parametrize("name", sorted(README_CPU_PRESETS))
def test_cpu_presets_are_the_readme_recipes(name):
    """fastcnn width 16 for the fp32 (AVX2) recipes; the bf16 ones add a second conv at 7x7 and, for the long
    runs, width 24 with light crop and erasing."""
    width, depth, epochs, flips, crop, erase = README_CPU_PRESETS[name]
    cfg = make_config(name)
    assert (cfg.model, cfg.width, cfg.depth or 1, cfg.epochs, cfg.flip) == (
        "fastcnn",
        width,
        depth,
        epochs,
        flips,
    )
    assert (cfg.crop_pad, cfg.erase_p, cfg.whiten, cfg.preset) == (crop, erase, True, name)
    model = build_model(cfg.model, **cfg.model_kwargs())
    assert param_count(model) == fastcnn_params(width, depth=depth)


def test_every_cpu_preset_is_in_the_readme_table():
    assert {n for n in PRESETS if n.startswith("cpu-")} == set(README_CPU_PRESETS)


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("nope", {}, "unknown model 'nope'"),
        ("tutorial", {"width": 8}, "takes no width"),
        ("tutorial", {"depth": 2}, "takes no depth"),
        ("fastcnn", {"depth": 0}, "--depth must be positive"),
        ("fastcnn", {"width": 0}, "--width must be positive"),
        ("resnet", {"depth": -1}, "--depth must be positive"),
    ],
)
def test_unknown_model_or_bad_knob_is_a_config_error(name, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_model(name, **kwargs)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [({"model": "nope"}, "unknown model"), ({"model": "tutorial", "width": 8}, "takes no --width")],
)
def test_train_config_refuses_what_the_registry_refuses(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make_config(**overrides)


def test_model_file_round_trip(tmp_path):
    """A saved record rebuilds the same network; LoadedModel applies the saved mean/std."""
    model = small("fastcnn").eval()
    classes = [f"c{i}" for i in range(10)]
    record = model_record(
        model,
        arch="fastcnn",
        arch_kwargs={"width": 4},
        classes=classes,
        mean=0.3,
        std=0.35,
        dataset="fashion",
        fingerprint="abc",
        epoch=2,
        metrics={"val_acc": 0.5},
        config={"model": "fastcnn"},
    )
    save(record, tmp_path / "model.pt")
    loaded = load_model(tmp_path)  # a run folder means its model.pt
    assert loaded.classes == classes and loaded.record["epoch"] == 2 and "state_dict" not in loaded.record
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    with torch.no_grad():
        expected = torch.softmax(model(preprocess(images, 0.3, 0.35)), 1).numpy()
    probs = loaded.predict_proba(images, batch_size=2)
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert loaded.features(images).shape == (5, model.classifier.in_features)
