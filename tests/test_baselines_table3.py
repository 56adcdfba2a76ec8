"""Issue #17: the paper's Table 3 rows (`--best`), today's additions, rows of every kind on one page, the estimate.

Runs use the tiny synthetic NPZ of test_bench_sklearn (300 training images); nothing here needs the real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fmnist.baselines import grid as gridmod
from fmnist.baselines.estimate import estimate_config, estimate_grid, estimate_text, scale
from fmnist.baselines.estimators import build_estimator, sanity_check
from fmnist.baselines.published import TABLE3, best_configs, published_for
from fmnist.baselines.report import load_rows, table3_markdown, write_report
from fmnist.baselines.results import cnn_bench_rows, external_row, read_results
from fmnist.baselines.runner import SklearnBenchConfig, run_benchmark, selected_configs
from fmnist.cli import main
from fmnist.errors import ConfigError
from fmnist.machine import cpu_info, machine_line
from test_bench_sklearn import one_line_error

EPYC = "AMD EPYC 9B45, 2 cores, AVX2 AVX512F AVX512-BF16"


# --------------------------------------------------------------------------- --best: Table 3's rows


def test_best_selects_exactly_the_13_family_best_configurations_of_table_3():
    picked = selected_configs(SklearnBenchConfig(best=True))
    assert len(picked) == 13 and len({c.key for c in picked}) == 13
    grid_keys = {c.key for c in gridmod.expand(gridmod.load_grid())}
    assert {c.key for c in picked} <= grid_keys  # picked out of the shipped grid, not invented
    params = {c.family: c.parameters for c in picked}
    assert params == {
        "SVC": {"C": 10.0, "kernel": "rbf"},
        "GradientBoostingClassifier": {"loss": "deviance", "n_estimators": 100, "max_depth": 10},
        "RandomForestClassifier": {"criterion": "entropy", "max_depth": 100, "n_estimators": 100},
        "MLPClassifier": {"activation": "relu", "hidden_layer_sizes": "(100,)"},
        "KNeighborsClassifier": {"n_neighbors": 5, "weights": "distance", "p": 1},
        "LogisticRegression": {"penalty": "l1", "C": 1.0, "multi_class": "ovr"},
        "LinearSVC": {"loss": "hinge", "penalty": "l2", "C": 1.0, "multi_class": "ovr"},
        "SGDClassifier": {"loss": "hinge", "penalty": "l2"},
        "DecisionTreeClassifier": {"criterion": "entropy", "splitter": "best", "max_depth": 10},
        "Perceptron": {"penalty": "l1"},
        "PassiveAggressiveClassifier": {"C": 1.0},
        "ExtraTreeClassifier": {"criterion": "gini", "splitter": "best", "max_depth": 10},
        "GaussianNB": {"priors": [0.1] * 10},
    }
    assert "GaussianProcessClassifier" not in params and not any(c.addition for c in picked)
    published = {p.name: p.accuracy for p in TABLE3}
    assert (published["SVC"], published["GradientBoostingClassifier"], published["GaussianNB"]) == (
        0.897,
        0.880,
        0.511,
    )
    assert [p.accuracy for p in TABLE3] == sorted((p.accuracy for p in TABLE3), reverse=True)
    # --only narrows them (e.g. the hours-long gradient boosting run on its own).
    only = selected_configs(SklearnBenchConfig(best=True, only=("GradientBoosting", "svc")))
    assert [c.family for c in only] == ["SVC", "GradientBoostingClassifier"]
    # A grid that lacks a Table 3 row says which.
    lacking = [
        c for c in gridmod.expand(gridmod.load_grid()) if c.family != "SVC" or c.parameters["C"] != 10.0
    ]
    with pytest.raises(
        ConfigError, match=r'--best: the grid lacks Table 3\'s SVC \{"C": 10.0, "kernel": "rbf"\}'
    ):
        best_configs(lacking)


def test_best_dry_run_lists_the_13_rows(tmp_path, tiny_npz, capsys):
    argv = ["bench", "sklearn", "--data-npz", str(tiny_npz), "--results", str(tmp_path / "r.jsonl")]
    assert main([*argv, "--best", "--quick", "100", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "13 configurations, 0 finished, 13 to run" in out
    runs = [line for line in out.splitlines() if line.startswith("run ")]
    assert len(runs) == 13
    assert any('MLPClassifier {"activation": "relu", "hidden_layer_sizes": "(100,)"}' in r for r in runs)
    assert any("GradientBoostingClassifier" in r and "loss='deviance' -> 'log_loss'" in r for r in runs)


def test_conflicting_selections_are_one_line_errors(tmp_path, tiny_npz, capsys):
    base = ["bench", "sklearn", "--data-npz", str(tiny_npz), "--results", str(tmp_path / "r.jsonl")]
    grid = tmp_path / "g.json"
    grid.write_text(json.dumps({"common": {}, "classifiers": {"GaussianNB": [{"var_smoothing": [1e-9]}]}}))
    assert "--best picks its rows from the shipped grid files; it cannot be combined with --grid" in (
        one_line_error(capsys, [*base, "--best", "--grid", str(grid)])
    )
    assert "--additions picks its rows" in one_line_error(capsys, [*base, "--additions", "--grid", str(grid)])
    assert "unknown family 'GaussianProcess'" in one_line_error(
        capsys, [*base, "--best", "--only", "GaussianProcess"]
    )  # in the grid, but not a Table 3 row
    assert not (tmp_path / "r.jsonl").exists()


# --------------------------------------------------------------------------- additions


def test_additions_are_one_line_each_and_build_on_todays_sklearn():
    text = gridmod.ADDITIONS_FILE.read_text()
    configs = gridmod.expand(gridmod.load_grid(gridmod.ADDITIONS_FILE), addition=True)
    names = list(dict.fromkeys(c.name for c in configs))
    assert {"HistGradientBoostingClassifier", "SVC", "LogisticRegression"} <= set(names)
    for name in names:
        lines = [line for line in text.splitlines() if f'"{name}":' in line]
        assert len(lines) == 1 and lines[0].rstrip().rstrip(",").endswith("]"), lines  # one line per entry
    assert all(c.addition for c in configs)
    assert not {c.key for c in configs} & {c.key for c in gridmod.expand(gridmod.load_grid())}
    rng = np.random.default_rng(0)
    images, labels = rng.normal(size=(40, 784)), np.arange(40) % 10
    for c in configs:
        built = build_estimator(c.name, c.parameters)
        if (
            c.name != "HistGradientBoostingClassifier"
        ):  # 3-4 s each on 20 images (hundreds of boosting rounds)
            assert sanity_check(built.estimator, images, labels) is None, c.key  # PCA: fewer components here
    whitened = build_estimator("SVC", {"pca_whiten": 50, "C": 10.0, "kernel": "rbf"}).estimator
    assert [name for name, _ in whitened.steps] == ["pca", "model"]
    assert whitened.named_steps["pca"].whiten and whitened.named_steps["pca"].n_components == 50
    assert whitened.named_steps["model"].C == 10.0
    from fmnist.baselines.estimators import CannotBuild

    with pytest.raises(CannotBuild, match="pca_whiten must be a positive number"):
        build_estimator("SVC", {"pca_whiten": "50"})


@pytest.mark.slow
def test_additions_run_and_their_rows_are_marked_with_size_and_machine(tmp_path, tiny_npz):
    cfg = SklearnBenchConfig(
        results=str(tmp_path / "r.jsonl"),
        dataset="tiny",
        data_npz=str(tiny_npz),
        quick=100,
        repeats=1,
        jobs=2,
        time_limit=60.0,
        memory_limit_mb=1000.0,
        additions=True,
        best=True,
        only=("LogisticRegression", "SVC"),
    )
    rows = {(r["addition"], r["name"]): r for r in run_benchmark(cfg, log=lambda _: None)}
    assert set(rows) == {
        (True, "LogisticRegression"),
        (True, "SVC"),
        (False, "LogisticRegression"),
        (False, "SVC"),
    }
    assert all(
        r["status"] == "done" and r["n_train"] == 100 and r["test_cpu_seconds"] is not None
        for r in rows.values()
    )
    assert all(" cores, " in r["machine"] for r in rows.values())
    whitened = rows[(True, "SVC")]
    assert whitened["parameters"] == {"pca_whiten": 50, "C": 10.0, "kernel": "rbf"}
    assert "PCA(n_components=50, whiten=True)" in whitened["estimator"] and whitened["mean_accuracy"] > 0.5
    assert rows[(True, "LogisticRegression")]["estimator"] == "LogisticRegression()"  # today's defaults
    stored = read_results(cfg.results)
    assert sorted(r["addition"] for r in stored) == [False, False, True, True]


# --------------------------------------------------------------------------- machine, CNN rows


def test_machine_line_names_the_cpu_and_its_vector_extensions():
    info = cpu_info("processor\t: 0\nmodel name\t: AMD EPYC 9B45\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert info["cpu"] == "AMD EPYC 9B45" and info["features"] == ["AVX2", "AVX512F", "AVX512-BF16"]
    assert machine_line({**info, "cores": 2}) == EPYC
    # The CNN benchmark's `machine` (its own flag names) reads the same way.
    cnn = {"cpu": "Intel Xeon", "cores": 16, "cpu_features": ["avx2", "amx_bf16"], "gpu": "NVIDIA H200"}
    assert machine_line(cnn) == "Intel Xeon, 16 cores, AVX2 AMX-BF16, GPU NVIDIA H200"
    assert machine_line({"cpu": "old", "cores": 1, "features": []}) == "old, 1 cores, no AVX2"
    assert (
        machine_line({"cpu": "AMD EPYC", "cores": 2}) == "AMD EPYC, 2 cores"
    )  # an older cnn.json: flags unknown


def cnn_json(train_limit=None) -> dict:
    """The shape `fmnist bench cnn` writes (cnn.json), two recipes and a reference."""
    machine = {"python": "3.11", "torch": "2.13", "cpu": "AMD EPYC 9B45", "cores": 2}
    machine["cpu_features"] = ["avx2", "avx512f", "avx512_bf16"]
    table = [
        {"recipe": "cpu-fast", "model": "fastcnn", "params": 132458, "seeds": 3, "acc_mean": 0.9339},
        {
            "recipe": "reference-tutorial",
            "model": "tutorial",
            "params": 3274634,
            "seeds": 1,
            "acc_mean": 0.9162,
        },
    ]
    for line, secs in zip(table, (240.0, 250.0), strict=True):
        line |= {"acc_std": 0.0012, "train_time_s": secs}
    return {
        "machine": machine,
        "config": {"recipes": ["cpu-fast"], "train_limit": train_limit},
        "runs": [],
        "table": table,
        "when": "2026-12-01 10:00:00",
    }


def test_cnn_json_becomes_rows_with_training_size_and_machine(tmp_path, capsys):
    rows = [external_row(r, "cnn") for r in cnn_bench_rows(cnn_json())]
    fast, ref = rows
    assert (fast["name"], fast["n_train"], fast["machine"], fast["subsample"]) == (
        "CNN cpu-fast",
        55_000,
        EPYC,
        None,
    )
    assert (fast["repeats"], fast["std_accuracy"], fast["train_seconds"]) == (3, 0.0012, 240.0)
    assert ref["n_train"] == 55_000 and ref["family"] == "CNN" and ref["done_time"] == "2026-12-01T10:00:00"
    # Keyed like `fmnist bench cnn --add-to` (fmnist.bench.cli), so adding cnn.json replaces those rows.
    add_to = {
        "name": "CNN cpu-fast",
        "dataset": "fashion",
        "mean_accuracy": 0.9339,
        "std": 0.0012,
        "repeats": 3,
        "time_per_repeat": 240.0,
        "parameters": {"recipe": "cpu-fast", "params": 132458},
    }
    assert external_row(add_to, "cnn")["key"] == fast["key"]
    small = cnn_bench_rows(cnn_json(train_limit=2000))[0]
    assert (small["subsample"], small["n_train"]) == (2000, 1800)  # the trainer holds out 200 on tiny runs
    # Through the command: the file as `fmnist bench cnn` wrote it.
    (tmp_path / "cnn.json").write_text(json.dumps(cnn_json()))
    results = tmp_path / "r.jsonl"
    assert main(["bench", "add", str(tmp_path / "cnn.json"), "--results", str(results)]) == 0
    assert [r["machine"] for r in read_results(results)] == [EPYC, EPYC]
    bad = cnn_json()
    bad["table"][1].pop("recipe")
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert "every 'table' entry needs a 'recipe'" in one_line_error(
        capsys, ["bench", "add", str(tmp_path / "bad.json"), "--results", str(results)]
    )
    assert len(read_results(results)) == 2  # nothing of the bad file was added


# --------------------------------------------------------------------------- one page, every kind of row


def sk_row(name, params, acc, *, n=60_000, quick=False, addition=False, machine=EPYC, secs=10.0) -> dict:
    sub = n if quick else None
    return {
        "key": f"fashion/{sub or 'full'}/{name} {json.dumps(params, sort_keys=True)}",
        "source": "sklearn",
        "family": name,
        "name": name,
        "parameters": params,
        "dataset": "fashion",
        "status": "done",
        "reason": "",
        "scores": [acc],
        "mean_accuracy": acc,
        "std_accuracy": 0.001,
        "repeats": 2,
        "train_seconds": secs,
        "train_cpu_seconds": secs,
        "subsample": sub,
        "quick": quick,
        "n_train": n,
        "machine": machine,
        "addition": addition,
        "sklearn": "1.9.1",
    }


def every_kind(tmp_path) -> Path:
    """A results file as a user gets it: full-size, quick-pass, addition and legacy rows, plus `bench add cnn.json`."""
    rows = [
        {**sk_row("SVC", {"C": 10.0, "kernel": "rbf"}, 0.890, secs=900.0), "test_cpu_seconds": 120.0},
        sk_row("SVC", {"C": 10.0, "kernel": "rbf"}, 0.8231, n=2000, quick=True, secs=0.28),
        sk_row("GaussianNB", {"priors": [0.1] * 10}, 0.5222, n=2000, quick=True, secs=0.01),
        sk_row(
            "HistGradientBoostingClassifier", {"max_iter": 100, "learning_rate": 0.1}, 0.89, addition=True
        ),
        sk_row("LogisticRegression", {"C": 1.0}, 0.845, addition=True, secs=30.0),
        {
            **sk_row("SVC", {"C": 1.0, "kernel": "rbf"}, 0.8064, n=2000, quick=True),
            "machine": None,
            "host": "vm",
        },
    ]
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "cnn.json").write_text(json.dumps(cnn_json()))
    assert main(["bench", "add", str(tmp_path / "cnn.json"), "--results", str(results)]) == 0
    return results


def test_report_prints_published_vs_measured_for_table_3_rows(tmp_path, capsys):
    rows = load_rows([every_kind(tmp_path)])
    assert [published_for(r) is not None for r in rows].count(True) == 3  # SVC full + quick, GaussianNB
    assert published_for(next(r for r in rows if r["name"] == "LogisticRegression")) is None  # an addition
    text = table3_markdown(rows)
    assert "arXiv:1708.07747" in text
    # Fit and predict CPU seconds per repeat; a row without the predict time leaves its cell empty.
    assert (
        "| SVC | C=10.0 kernel=rbf | 0.897 | 0.8900 ± 0.0010 (2) | -0.7 | 60,000 (full) | 900.00 | 120.00 |"
        in text
    )
    assert "| -7.4 | 2,000 (quick) | 0.28 |  |" in text
    assert "| SVC | C=10.0 kernel=rbf | 0.897 | 0.8231 ± 0.0010 (2) | -7.4 | 2,000 (quick) |" in text
    assert "| GaussianNB | priors=[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1] | 0.511 | 0.5222" in text
    assert (
        "| GradientBoostingClassifier | loss=deviance n_estimators=100 max_depth=10 | 0.880 | not run | | | | | |"
        in text
    )
    assert table3_markdown([r for r in rows if r["source"] == "cnn"]) == ""
    assert (
        main(["bench", "report", "--results", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "d.html")])
        == 0
    )
    out = capsys.readouterr().out
    assert "| LogisticRegression (addition) | C=1.0 | 0.8450" in out and "| -0.7 |" in out


@pytest.mark.browser
def test_dashboard_holds_full_quick_addition_and_cnn_rows_in_one_table_and_chart(tmp_path):
    from browser import chromium, console_errors, file_url, wait_until

    page = write_report(load_rows([every_kind(tmp_path)]), tmp_path / "dashboard.html", sources=["mixed"])
    with chromium(tmp_path) as driver:
        driver.get(file_url(page))

        def body_rows(d):
            return d.find_elements("css selector", "#results tbody tr")

        def table(d) -> list[dict]:
            heads = [th.text.rstrip(" ▲▼") for th in d.find_elements("css selector", "#results thead th")]
            return [
                dict(zip(heads, (td.text for td in tr.find_elements("css selector", "td")), strict=True))
                for tr in body_rows(d)
            ]

        wait_until(driver, lambda d: len(body_rows(d)) == 8)
        assert console_errors(driver) == []
        shown = {
            (r["Name"], r["Training images"]): r
            for r in table(driver)
            if r["Parameters"] != "C=1.0 kernel=rbf"
        }
        assert shown[("SVC", "60,000 (full)")]["Kind"] == "2017 grid"
        assert shown[("SVC", "60,000 (full)")]["Machine"] == EPYC
        assert shown[("SVC", "60,000 (full)")]["Table 3 (2017)"] == "0.8970"
        assert shown[("SVC", "60,000 (full)")]["measured − published"] == "−0.7 pt"
        assert shown[("SVC", "2,000 (quick)")]["measured − published"] == "−7.4 pt"
        assert shown[("HistGradientBoostingClassifier", "60,000 (full)")]["Kind"] == "addition"
        assert shown[("HistGradientBoostingClassifier", "60,000 (full)")]["Table 3 (2017)"] == ""
        assert shown[("CNN cpu-fast", "55,000 (full)")]["Kind"] == "CNN"
        assert shown[("CNN cpu-fast", "55,000 (full)")]["Machine"] == EPYC
        assert shown[("SVC", "2,000 (quick)")]["Machine"] == EPYC
        assert any(r["Machine"] == "host vm" for r in table(driver))  # a row from before `machine`

        # One chart holds every kind: full (filled), quick (hollow), addition, CNN markers, each with a tip.
        charts = driver.find_elements("css selector", "svg.scatter")
        assert len(charts) == 1
        tips = [
            t.get_attribute("textContent") for t in charts[0].find_elements("css selector", "g.point title")
        ]
        assert len(tips) == 8
        assert f"SVC C=10.0 kernel=rbf: 0.8900, 900.00 s [60,000 (full), 2017 grid, {EPYC}]" in tips
        assert f"SVC C=10.0 kernel=rbf: 0.8231, 0.28 s [2,000 (quick), 2017 grid, {EPYC}]" in tips
        assert any(t.startswith("CNN cpu-fast") and "[55,000 (full), CNN, " in t for t in tips)
        assert any(t.startswith("HistGradientBoostingClassifier") and ", addition, " in t for t in tips)

        # The Table 3 section: one line per measured run of each of the 13 configurations (SVC twice).
        table3 = driver.find_elements("css selector", "#table3 tbody tr")
        assert len(table3) == 14
        assert table3[0].text.startswith("SVC C=10.0 kernel=rbf 0.897 0.8900 ± 0.0010 -0.7 60,000 (full)")
        assert "not run" in table3[2].text  # gradient boosting
        best = {
            tr.text.split(" ")[0]: tr.text for tr in driver.find_elements("css selector", "#best tbody tr")
        }
        assert "0.897 (C=10.0 kernel=rbf)" in best["SVC"]  # published beside the family best

        kind = driver.find_element("id", "filter-kind")
        for value, expected in (
            ("cnn", 2),
            ("addition", 2),
            ("quick", 3),
            ("full", 5),
            ("table3", 3),
            ("all", 8),
        ):
            driver.execute_script(
                "const s = document.getElementById('filter-kind'); s.value = arguments[0];"
                " s.dispatchEvent(new Event('change'))",
                value,
            )
            wait_until(driver, lambda d, n=expected: len(body_rows(d)) == n)
        assert kind.get_attribute("value") == "all"


# --------------------------------------------------------------------------- the estimate


def quick_row(name, params, fit, test, *, scores=(0.8, 0.8), status="done", cpu=None) -> dict:
    row = sk_row(name, params, scores[0] if scores else None, n=2000, quick=True)
    row |= {"status": status, "scores": list(scores), "train_cpu_seconds": fit, "test_cpu_seconds": test}
    row["cpu_seconds"] = cpu if cpu is not None else 2.0 + len(scores) * ((fit or 0) + (test or 0))
    return row


def test_estimate_scales_each_family_by_its_law_and_says_it_is_an_estimate(tmp_path, capsys):
    assert (
        scale("2", 2000, 60_000) == 900 and scale("1", 2000, 60_000) == 30 and scale("0", 2000, 60_000) == 1
    )
    assert scale("nlogn", 2000, 60_000) == pytest.approx(30 * np.log(60_000) / np.log(2000))
    svc = gridmod.BenchConfig("SVC", {"C": 10.0, "kernel": "rbf"})
    knn = gridmod.BenchConfig("KNeighborsClassifier", {"n_neighbors": 5, "weights": "distance", "p": 1})
    lr = gridmod.BenchConfig("LogisticRegression", {"penalty": "l1", "C": 1.0, "multi_class": "ovr"})
    gb = gridmod.BenchConfig(
        "GradientBoostingClassifier", {"loss": "deviance", "n_estimators": 100, "max_depth": 10}
    )
    gp = gridmod.BenchConfig("GaussianProcessClassifier", {"multi_class": "one_vs_rest"})
    rows = [
        quick_row(svc.name, svc.parameters, 1.0, 2.0),  # scores agree: 2 repeats at full size
        quick_row(knn.name, knn.parameters, 0.01, 10.0, scores=(0.7, 0.8)),  # they differ: 3 repeats
        quick_row(lr.name, lr.parameters, 3.0, 0.5),
        quick_row(gb.name, gb.parameters, None, None, scores=(), status="timeout", cpu=63.0),
    ]
    est = {e.config.family: e for e in estimate_grid([svc, knn, lr, gb, gp], rows, memory_limit_mb=64_000)}
    assert est["SVC"].cpu_seconds == pytest.approx(2 * (900 * 1.0 + 30 * 2.0) + 2.0)  # fit n^2, predict n
    assert est["KNeighborsClassifier"].cpu_seconds == pytest.approx(3 * (30 * 0.01 + 30 * 10.0) + 2.0)
    assert est["LogisticRegression"].cpu_seconds == pytest.approx(
        2 * (30 * 3.0 + 0.5) + 2.0
    )  # predict: constant
    assert est["GradientBoostingClassifier"].lower_bound
    assert est["GradientBoostingClassifier"].cpu_seconds == pytest.approx(
        2 * 60.0 * scale("nlogn", 2000, 60_000)
    )
    assert (
        est["GaussianProcessClassifier"].cpu_seconds is None
        and "161 GiB" in est["GaussianProcessClassifier"].note
    )
    text = estimate_text(list(est.values()), 60_000, jobs=2, time_limit=3600.0)
    assert text.startswith("ESTIMATE (not a measurement)")
    assert "| SVC | 1 | 0.5 h | n^2 (at least) | n |" in text
    assert "| GradientBoostingClassifier | 1 | at least 1.4 h | n log n | constant |" in text
    assert "1 job(s) would reach the limit" in text and "not included (1): GaussianProcessClassifier" in text
    # Without a missing row it is "not measured"; a stale full-size row is not a subsample.
    assert estimate_config(svc, None, 60_000, 64_000).note == "not measured"
    # The command: the shipped grid against the file; no subsample rows at all is one line.
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["bench", "estimate", "--results", str(results), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "ESTIMATE (not a measurement) of the CPU time of 143 configurations on 60,000" in out
    assert "not included (" in out and "(not measured)" in out
    assert main(["bench", "estimate", "--results", str(results), "--best"]) == 0
    out = capsys.readouterr().out
    assert "CPU time of 13 configurations" in out and "| SVC | 1 | 0.5 h |" in out
    full = tmp_path / "full.jsonl"
    full.write_text(json.dumps(sk_row("SVC", {"C": 10.0, "kernel": "rbf"}, 0.89)) + "\n")
    assert "no subsample rows of fashion" in one_line_error(
        capsys, ["bench", "estimate", "--results", str(full)]
    )
