"""``fmnist sweep --search optuna``: an Optuna study whose trials are sweep runs on the grid's Dask path.

The study lives in ``OUT/optuna.db`` (SQLite), which is what makes it resumable: a restarted sweep loads
it, finishes the trials a killed sweep left running (each from its own folder ``trial-NNNN``: a finished
evaluation is reused, a checkpoint resumed) and asks only for the trials still missing from ``--trials``.
Failed trials count towards ``--trials`` (their error is kept in the study and in the table). The
objective is the run's validation accuracy, never its test accuracy. Up to ``workers`` trials are in
flight at a time; each is told to the study as it comes back.
"""

from __future__ import annotations

import time
from dataclasses import astuple, replace
from pathlib import Path
from typing import Any

from fmnist.errors import ConfigError, FmnistError
from fmnist.sweep.plan import DEFAULT_OPTIONS, Knob, SearchPlan, SweepOptions

DB_FILE = "optuna.db"
STUDY_NAME = "fmnist-sweep"


def import_optuna() -> Any:
    """Optuna, imported here only (an optional extra); missing: one line saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            '--search optuna needs Optuna; install it with: pip install "fmnist[optuna]"'
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def trial_name(number: int) -> str:
    return f"trial-{number:04d}"


def open_study(optuna: Any, out: Path, plan: SearchPlan, seed: int) -> Any:
    """Create or load the study in ``out/optuna.db``; refuse one made from another plan (one line)."""
    out.mkdir(parents=True, exist_ok=True)
    db = out / DB_FILE
    try:
        study = optuna.create_study(
            study_name=STUDY_NAME,
            storage=f"sqlite:///{db.resolve()}",
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            load_if_exists=True,
        )
    except Exception as exc:  # a damaged database: SQLAlchemy's errors, many lines; never overwritten
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FmnistError(f"{db}: cannot open the Optuna study ({first}); use a new --out") from None
    signature = plan.signature()
    saved = study.user_attrs.get("plan")
    if saved is None:
        study.set_user_attr("plan", signature)
    elif saved != signature:
        what = "search space" if saved.get("base") == signature["base"] else "[base] config"
        raise FmnistError(f"{db}: this study was made with another {what}; use a new --out")
    return study


def suggest(trial: Any, knobs: tuple[Knob, ...]) -> dict[str, Any]:
    for k in knobs:
        if k.choices is not None:
            trial.suggest_categorical(k.name, list(k.choices))
        elif k.is_int:
            trial.suggest_int(k.name, k.low, k.high, log=k.log)
        else:
            trial.suggest_float(k.name, float(k.low), float(k.high), log=k.log)
    return dict(trial.params)


def run_search(
    plan: SearchPlan,
    out: Path,
    *,
    trials: int,
    seed: int = 0,
    options: SweepOptions = DEFAULT_OPTIONS,
) -> dict:
    """Run the study up to ``trials`` trials; write the sweep table like the grid; return it."""
    scheduler, workers, threads, ensemble, data_dir = astuple(options)
    from distributed import as_completed

    from fmnist import dask_client
    from fmnist.sweep.runner import finish, run_task

    optuna = import_optuna()
    state = optuna.trial.TrialState
    study = open_study(optuna, out, plan, seed)
    existing = study.get_trials(deepcopy=False)
    queue = [(t.number, dict(t.params)) for t in existing if t.state == state.RUNNING]  # a killed sweep's
    to_ask = max(0, trials - len([t for t in existing if t.state != state.WAITING]))
    figures_now: dict[int, dict] = {}

    def fail(number: int, message: str) -> None:
        study.set_user_attr(f"error:{number}", message)
        study.tell(number, state=state.FAIL)
        print(f"{trial_name(number)}: error: {message}", flush=True)

    with dask_client.client(scheduler, workers, threads=threads) as client:
        pending = as_completed()
        in_flight: dict[Any, int] = {}

        def fill() -> None:
            nonlocal to_ask
            while len(in_flight) < workers and (queue or to_ask):
                if queue:
                    number, params = queue.pop(0)
                else:
                    trial = study.ask()
                    to_ask -= 1
                    number, params = trial.number, suggest(trial, plan.knobs)
                try:
                    cfg = replace(plan.config(params), threads=threads)
                except FmnistError as exc:  # a combination the config refuses
                    fail(number, str(exc))
                    continue
                future = client.submit(
                    run_task,
                    str(out / trial_name(number)),
                    cfg.to_dict(),
                    data_dir,
                    key=f"fmnist-trial-{number}-{time.time_ns()}",
                    pure=False,
                )
                in_flight[future] = number
                pending.add(future)

        fill()
        for future in pending:
            number = in_flight.pop(future)
            try:
                figures = future.result()
            except FmnistError as exc:
                figures = {"error": str(exc)}
            if "error" not in figures and figures.get("val_acc") is None:
                figures = {"error": "the run recorded no validation accuracy"}
            if "error" in figures:
                fail(number, figures["error"])
            else:
                tell(study, number, figures)
                figures_now[number] = figures
            fill()

    result = study_table(study, state, out, figures_now)
    return finish(out, result, ensemble, data_dir)


def tell(study: Any, number: int, figures: dict) -> None:
    """Report a finished trial's validation accuracy to the study, and say it."""
    study.tell(number, figures["val_acc"])
    reused = " (finished before)" if figures.get("reused") else ""
    print(f"{trial_name(number)}: val {figures['val_acc']:.4f}{reused}", flush=True)


def study_table(study: Any, state: Any, out: Path, figures_now: dict[int, dict]) -> dict:
    """The sweep table of every finished or failed trial (figures of trials told in an earlier sweep are
    read from their folders) and the best trial by validation accuracy."""
    from fmnist.evaluate.record import read_evaluation
    from fmnist.sweep.runner import figure_row

    rows = []
    for t in study.get_trials(deepcopy=False):
        name = trial_name(t.number)
        if t.state == state.COMPLETE:
            figures, status = figures_now.get(t.number), None
            if figures is None:  # told in an earlier sweep: its figures from its folder
                status = "reused"
                try:
                    figures = {**read_evaluation(out / name).to_dict(), "reused": True}
                except FmnistError as exc:
                    figures = {"error": str(exc)}
            rows.append(figure_row(name, dict(t.params), figures, status))
        elif t.state == state.FAIL:
            error = study.user_attrs.get(f"error:{t.number}", "failed")
            rows.append(figure_row(name, dict(t.params), {"error": error}))
    result: dict = {"runs": rows}
    done = study.get_trials(deepcopy=False, states=(state.COMPLETE,))
    if done:
        best = max(done, key=lambda t: (t.value, -t.number))
        result["best"] = {"run": trial_name(best.number), "val_acc": best.value, "params": dict(best.params)}
    return result
