"""`python -m tuning.search`: KerasTuner search over batch size, optimizer and learning rate (val_sdr)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os

from svsgan_tf import cli

TUNERS = ("random", "bayesian", "hyperband")          # tuning.hypermodel.TUNERS, without importing it


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tuning.search", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("--config", default=None, metavar="NAME|FILE",
                        help="the fixed settings: a named recipe or a config.json (default: the package defaults)")
    parser.add_argument("--data", default=None, metavar="[FORMAT:]PATH",
                        help="training songs (data.source); the last data.validation_tracks are held out")
    parser.add_argument("--space", default=None, metavar="FILE.json",
                        help="narrow or fix hyperparameters (see tuning/space.py); default: the whole space")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a fixed setting (repeatable)")
    parser.add_argument("--tuner", choices=TUNERS, default="random")
    parser.add_argument("--trials", type=int, default=6,
                        help="trials to run (default %(default)s; hyperband sets its own from train.epochs)")
    parser.add_argument("--strategy", default="auto", help="auto|one|mirrored|multiworker")
    parser.add_argument("--out", default="runs/tuning", help="tuner folder; a search resumes from it")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (the line per trial stays)")
    return parser


def make_tuner(name: str, hypermodel, trials: int, out: str, seed: int):
    """A KerasTuner tuner (tuning.hypermodel.TUNERS) maximising val_sdr (median vocals SDR of the
    validation songs), resuming from `out` (check_search_folder first). Hyperband runs up to
    train.epochs per trial, each round continuing the last, and sets its own number of trials."""
    import keras_tuner as kt

    from tuning.hypermodel import TUNERS as CLASSES

    objective = kt.Objective("val_sdr", direction="max")
    folder, project = os.path.split(os.path.abspath(out))
    common = dict(objective=objective, directory=folder, project_name=project, seed=seed, overwrite=False)
    if name == "hyperband":
        return CLASSES[name](hypermodel, max_epochs=max(1, hypermodel.config.train.epochs), **common)
    return CLASSES[name](hypermodel, max_trials=trials, **common)


def fixed_epochs(space: dict, config, source: str | None) -> dict:
    """The space for Hyperband: it chooses each trial's epochs itself (up to train.epochs), so the
    epochs of each phase are fixed to the config's (or to the one value the space file gives); a space
    file that searches them is refused."""
    from tuning.space import SPACE, Hyperparameter

    result = dict(space)
    for name in ("pretrain_epochs", "gan_epochs"):
        hp = space[name]
        if hp != SPACE[name] and not (hp.kind == "choice" and len(hp.values) == 1):
            raise cli.SVSGANError(f"--space {source}: {name}: hyperband chooses the epochs itself; fix it "
                                  "(one value) or use another tuner")
        value = hp.values[0] if hp.kind == "choice" else hp.default(config)
        result[name] = Hyperparameter(name, "choice", (value,))
    return result


SEARCH_FILE = "search.json"
READER_KEYS = ("reader", "parallel_reads")


def search_identity(tuner: str, config, space: dict) -> dict:
    """What makes two searches the same one: the tuner, every fixed setting and the search space."""
    fixed = json.loads(config.to_json())
    fixed.pop("git_commit", None)
    for key in READER_KEYS:                   # the readers give the same excerpts: either resumes a search
        fixed["data"].pop(key, None)
    return json.loads(json.dumps({"tuner": tuner, "config": fixed,
                                  "space": {name: dataclasses.asdict(hp) for name, hp in space.items()}}))


def check_search_folder(out: str, identity: dict) -> bool:
    """True when `out` holds this same search (it resumes), False when it is new (absent or empty);
    SVSGANError (one line, nothing touched) when it holds another search's results (per its
    search.json) or anything else."""
    from svsgan_tf.io_utils import read_json

    path = os.path.join(out, SEARCH_FILE)
    if os.path.isfile(path):
        found = read_json(path, cli.SVSGANError, path)
        if found != identity:
            ours, theirs = flat(identity), flat(found)
            differs = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
            raise cli.SVSGANError(f"{out}: holds the results of a different search ({', '.join(differs)} "
                                  "differ); choose another --out, or repeat that search's own arguments to resume it")
        return True
    if os.path.isdir(out) and os.listdir(out):
        kind = ("a KerasTuner project without the search.json that identifies a search (an older version's "
                "or another tool's)" if os.path.isfile(os.path.join(out, "oracle.json"))
                else f"not a tuning.search results folder (no {SEARCH_FILE})")
        raise cli.SVSGANError(f"{out}: not empty and {kind}; choose another --out")
    return False


def flat(value, prefix: str = "") -> dict:
    """{"a.b.c": leaf} for a JSON value of nested objects (lists are leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    return {key: leaf for name, item in value.items() for key, leaf in flat(item, f"{prefix}{name}.").items()} \
        if value else {prefix: value}


def write_search_file(out: str, identity: dict) -> None:
    """Start a new search folder with its search.json (check_search_folder reads it on resume)."""
    from svsgan_tf.io_utils import atomic_write_text

    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, SEARCH_FILE), json.dumps(identity, indent=2) + "\n")


def trial_run(trial) -> dict:
    """The epochs a trial trained and its wall time in seconds (None for a trial that failed)."""
    metrics = trial.metrics

    def last(name):
        return metrics.get_last_value(name) if metrics.exists(name) else None

    seconds = last("wall_seconds")
    return {"epochs": int(last("epochs_trained") or 0), "best_epoch": last("best_epoch") and int(last("best_epoch")),
            "wall_seconds": None if seconds is None else round(float(seconds), 1)}


def choice_order(values) -> list:
    """The distinct values of a hyperparameter in display order: numbers ascending, then strings."""
    return sorted(set(values), key=lambda v: (isinstance(v, str), 0 if isinstance(v, str) else v, str(v)))


PLOTTED = ("batch_size", "optimizer", "g_learning_rate", "adversarial_weight")


def plot_trials(rows: list[dict], path: str) -> None:
    """val_sdr of each scored trial against the main hyperparameters (PLOTTED), one panel each, to `path`
    (a PNG, written atomically). Batch sizes and choices are evenly spaced categories; trials more than
    1 dB below the median (diverged ones) are drawn on the lower edge as triangles, so that they do
    not flatten the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from svsgan_tf.io_utils import atomic_path

    scored = [row for row in rows if row.get("val_sdr") is not None]
    scores = np.array([row["val_sdr"] for row in scored], dtype=float)
    floor = scores[scores >= np.median(scores) - 1.0].min() - 0.05 if len(scores) else 0.0
    low = scores < floor
    shown = np.maximum(scores, floor)
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.2), sharey=True)
    for axis, name in zip(axes, PLOTTED):
        values = [row.get(name) for row in scored]
        if name == "g_learning_rate" and all(isinstance(v, (int, float)) for v in values):
            positions = np.array(values, dtype=float)
            axis.set_xscale("log")
        else:
            labels = choice_order(values)
            positions = np.array([labels.index(v) for v in values], dtype=float)
            axis.set_xticks(range(len(labels)), [str(v) for v in labels], rotation=30 if name == "optimizer" else 0)
            axis.set_xlim(-0.5, len(labels) - 0.5)
        axis.scatter(positions[~low], shown[~low], alpha=0.7)
        if low.any():
            axis.scatter(positions[low], shown[low], marker="v", color="tab:red", label=f"{low.sum()} below")
            axis.legend(loc="best", fontsize=8)
        axis.set_xlabel(name)
    axes[0].set_ylabel("val_sdr (dB, held-out songs)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def trial_tables(rows: list[dict]) -> tuple[str, str]:
    """(CSV, Markdown) tables of the trials, best first: trial, val_sdr (the objective: the median
    vocals SDR of the held-out songs, not a training loss) and each hyperparameter. The Markdown keeps
    the columns that vary (the others are listed once as fixed) and adds group_table."""
    import csv
    import io

    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(rows)

    def cell(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    always = ("trial", "val_sdr", "epochs", "best_epoch", "wall_seconds")
    fixed = [c for c in columns if c not in always and len({str(row.get(c)) for row in rows}) == 1]
    shown = [c for c in columns if c not in fixed]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in shown) + " |" for row in rows]
    if fixed and rows:
        lines += ["", "Fixed: " + ", ".join(f"{c} = {cell(rows[0][c])}" for c in fixed) + "."]
    return buffer.getvalue(), "\n".join(lines + ["", group_table(rows)])


GROUPED = ("batch_size", "optimizer", "adversarial_weight", "width")


def group_table(rows: list[dict]) -> str:
    """Markdown: for each value of each GROUPED hyperparameter that the trials vary, the number of
    scored trials and their best and median val_sdr (what a search says about that choice)."""
    import numpy as np

    scored = [row for row in rows if row.get("val_sdr") is not None]
    lines = ["| hyperparameter | value | trials | best val_sdr | median val_sdr |", "|---|---|---|---|---|"]
    for name in GROUPED:
        values = choice_order(row.get(name) for row in scored if name in row)
        if len(values) < 2:
            continue
        for value in values:
            scores = [row["val_sdr"] for row in scored if row.get(name) == value]
            lines.append(f"| {name} | {value} | {len(scores)} | {max(scores):.3f} | {np.median(scores):.3f} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from svsgan_tf.config import Config

    from svsgan_tf.config import config_path
    from tuning.space import load_space

    config = Config.load(config_path(args.config)) if args.config else Config()
    overrides = cli.parse_overrides(args.set)
    if args.data:
        overrides["data.source"] = args.data
    config = config.replace(**overrides).validate()
    space = load_space(args.space)                       # a bad space file fails before TensorFlow starts
    if args.tuner == "hyperband":
        space = fixed_epochs(space, config, args.space)
        config = config.replace(**{f"train.{name}": space[name].values[0]
                                   for name in ("pretrain_epochs", "gan_epochs")}).validate()
    identity = search_identity(args.tuner, config, space)
    resuming = check_search_folder(args.out, identity)
    cli.start_tensorflow(quiet=False)                   # --quiet drops the progress bars, not the line per trial
    from svsgan_tf.io_utils import atomic_write_text
    from svsgan_tf.runtime import set_seed
    from svsgan_tf.training.distribute import make_strategy
    from svsgan_tf.training.fit import load_tracks
    from tuning.hypermodel import SVSGANHyperModel

    strategy = make_strategy(args.strategy)              # first: a cluster must form before any op

    set_seed(config.train.seed)
    tracks, validation = load_tracks(config, quiet=args.quiet)
    if not validation:
        raise cli.SVSGANError("tuning: needs validation tracks (set data.validation_tracks > 0)")
    from svsgan_tf.training.callbacks import ValidationSDR

    if ValidationSDR(validation, config).nb_scorable() == 0:
        raise cli.SVSGANError(f"{config.data.source}: the vocals of every validation song "
                              f"({', '.join(t.name for t in validation)}) are silent, so there is no val_sdr, "
                              "the search's objective")
    hypermodel = SVSGANHyperModel(config, tracks, validation, strategy=strategy, space=space)
    if not resuming:                                 # only once the data and settings are known good
        write_search_file(args.out, identity)
    tuner = make_tuner(args.tuner, hypermodel, args.trials, args.out, config.train.seed)
    tuner.search(verbose=0 if args.quiet else 1)
    best = tuner.get_best_hyperparameters(1)[0]
    best_config = hypermodel.trial_config(best)
    atomic_write_text(os.path.join(args.out, "best_config.json"), best_config.to_json() + "\n")
    trials = tuner.oracle.get_best_trials(len(tuner.oracle.trials))
    summary = [{"trial": t.trial_id, "val_sdr": t.score, **t.hyperparameters.values, **trial_run(t)}
               for t in trials]
    atomic_write_text(os.path.join(args.out, "trials.json"), json.dumps(summary, indent=2))
    csv_text, markdown_text = trial_tables(summary)
    atomic_write_text(os.path.join(args.out, "trials.csv"), csv_text)
    atomic_write_text(os.path.join(args.out, "trials.md"), markdown_text)
    plot_trials(summary, os.path.join(args.out, "trials.png"))
    print(markdown_text)
    print(f"best: {best.values}; config written to {os.path.join(args.out, 'best_config.json')}")
    return 0


def run() -> None:
    """Console-script entry point: `main` with one-line errors and exit codes."""
    cli.run(main)


if __name__ == "__main__":
    run()
