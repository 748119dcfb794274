"""RecBole 1.2.1 side by side: SASRec / GRU4Rec on ML-100K under leave-one-out, full ranking.

One command::

    textrec bench recbole --models SASRec GRU4Rec --epochs 40 --threads 1 [--publish]

Per model it records valid/test HR@10, NDCG@10, MRR@10, Recall@10 (RecBole's own full-sort
evaluation), seconds per epoch, train seconds, epochs run, best epoch, test-set inference
users/s and the config. It also checks that RecBole's leave-one-out targets (after its own
split) are the ones ``textrec.data.splits.leave_one_out`` picks on the same file, and explains
any difference. The JSON is rewritten (atomically) after each model, so partial results survive;
models already in an existing result of the same name and not re-run are kept.

RecBole needs shims on this stack (``textrec/benchmarks/recbole_shims.py``); they are applied here
only. Checkpoints go to a temporary folder (``--checkpoint-dir``), never to the repo's ``saved/``.
Logs go to ``<name>/`` beside the result (``eval/results/<name>/`` when published).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from textrec.options import add_seed_option, add_threads_option, positive_int
from textrec.results import add_output_options, writer_from_args

METRIC_NAMES = {"hit@10": "HR@10", "ndcg@10": "NDCG@10", "mrr@10": "MRR@10", "recall@10": "Recall@10"}
# Training/eval settings worth recording next to each model's own hyper-parameters.
RECORDED_KEYS = (
    "model", "dataset", "seed", "reproducibility", "epochs", "stopping_step", "eval_step", "learner",
    "learning_rate", "weight_decay", "train_batch_size", "eval_batch_size", "clip_grad_norm",
    "train_neg_sample_args", "eval_args", "metrics", "topk", "valid_metric", "valid_metric_bigger", "metric_decimal_place",
    "MAX_ITEM_LIST_LENGTH", "loss_type", "normalize_all", "load_col", "val_interval",
    "user_inter_num_interval", "item_inter_num_interval", "rm_dup_inter", "filter_inter_by_user_or_item",
    "device", "repeatable",
)
LOG = logging.getLogger("recbole_side_by_side")

# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _StripColor(logging.Filter):
    def filter(self, record):
        if isinstance(record.msg, str):
            record.msg = _ANSI.sub("", record.msg)
        return True


def setup_logging(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(logging.INFO)
    for h in (logging.FileHandler(log_path), logging.StreamHandler(sys.stdout)):
        h.setFormatter(fmt)
        h.addFilter(_StripColor())
        root.addHandler(h)


def jsonable(v):
    """Config values -> JSON (enums, torch devices, numpy scalars become str/float)."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


@contextlib.contextmanager
def plain_argv():
    """RecBole's Config parses ``--key=value`` from sys.argv; keep our own CLI away from it."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


# ---------------------------------------------------------------------------------------------
# RecBole pieces
# ---------------------------------------------------------------------------------------------
def recbole_data_path() -> Path:
    import recbole

    return Path(recbole.__file__).resolve().parent / "dataset_example"


def make_config(model: str, args, checkpoint_dir: str):
    from recbole.config import Config

    overrides = {
        "data_path": str(recbole_data_path()),
        "checkpoint_dir": checkpoint_dir,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "train_neg_sample_args": None,
        "loss_type": "CE",
        "device": "cpu",
        "use_gpu": False,
        "metrics": ["Hit", "NDCG", "MRR", "Recall"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 6,
        "seed": args.seed,
        "reproducibility": True,
        "epochs": args.epochs,
        "stopping_step": args.stopping_step,
        "eval_step": 1,
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
    }
    with plain_argv():
        config = Config(model=model, dataset="ml-100k", config_dict=overrides)
    return config, overrides


def recorded_config(config, model: str, overrides: dict) -> dict:
    import yaml

    model_yaml = recbole_data_path().parent / "properties" / "model" / f"{model}.yaml"
    keys = list(RECORDED_KEYS)
    if model_yaml.exists():
        keys += [k for k in (yaml.safe_load(model_yaml.read_text()) or {}) if k not in keys]
    out = {k: jsonable(config[k]) for k in keys if k in config.final_config_dict}
    out["overrides_passed"] = sorted(k for k in overrides if k not in ("data_path", "checkpoint_dir"))
    return out


def metrics_of(result) -> dict:
    return {METRIC_NAMES.get(k, k): round(float(v), 6) for k, v in dict(result or {}).items()}


# ---------------------------------------------------------------------------------------------
# target agreement with textrec's leave_one_out
# ---------------------------------------------------------------------------------------------
def read_inter_file(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, sep="\t", dtype=str)
    expected = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    if list(raw.columns) != expected:
        raise ValueError(f"{path}: header {list(raw.columns)} != {expected}")
    return pd.DataFrame({
        "user_id": raw["user_id:token"].to_numpy(),
        "item_id": raw["item_id:token"].to_numpy(),
        "rating": raw["rating:float"].astype(np.float64).to_numpy(),
        "timestamp": raw["timestamp:float"].astype(np.float64).to_numpy(),
    })


def _targets_by_user(dataset, evalset) -> dict:
    return {str(dataset.user_ids[u]): str(dataset.item_ids[evalset.targets(i)[0]])
            for i, u in enumerate(evalset.users)}


def _recbole_rows(rb_dataset, loader) -> tuple[dict, dict]:
    """Per user token: target item token and the history (item tokens, oldest first, <= 50)."""
    feat = loader._dataset.inter_feat
    uid = feat[rb_dataset.uid_field].numpy()
    iid = feat[rb_dataset.iid_field].numpy()
    lists = feat[rb_dataset.item_id_list_field].numpy()
    lengths = feat[rb_dataset.item_list_length_field].numpy()
    users = rb_dataset.id2token(rb_dataset.uid_field, uid)
    items = rb_dataset.id2token(rb_dataset.iid_field, iid)
    targets = {str(u): str(i) for u, i in zip(users, items)}
    hist = {str(u): [str(t) for t in rb_dataset.id2token(rb_dataset.iid_field, lists[k, :lengths[k]])]
            for k, u in enumerate(users)}
    return targets, hist


def _simulate(frame: pd.DataFrame, key: np.ndarray) -> tuple[dict, dict, np.ndarray]:
    """Leave-one-out with events ordered by (user, key, row): test/valid target per user + the order."""
    order = np.lexsort((frame["row"].to_numpy(), key, frame["user_code"].to_numpy()))
    f = frame.iloc[order]
    pos = f.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    test = dict(zip(f["user_id"][pos == 0], f["item_id"][pos == 0]))
    valid = dict(zip(f["user_id"][pos == 1], f["item_id"][pos == 1]))
    return test, valid, order


def target_agreement(rb_dataset, valid_data, test_data, inter_path: Path, max_examples: int = 6) -> dict:
    from textrec.data.dataset import RecDataset
    from textrec.data.splits import leave_one_out

    frame = read_inter_file(inter_path)
    tr_ds = RecDataset.from_frames("ml-100k", frame, source=str(inter_path))
    split = leave_one_out(tr_ds)
    tr_test, tr_valid = _targets_by_user(tr_ds, split.test), _targets_by_user(tr_ds, split.valid)
    tr_test_hist = {str(tr_ds.user_ids[u]): [str(x) for x in tr_ds.item_ids[split.test.history(i)]]
                    for i, u in enumerate(split.test.users)}
    rb_test, rb_test_hist = _recbole_rows(rb_dataset, test_data)
    rb_valid, _ = _recbole_rows(rb_dataset, valid_data)

    users = sorted(set(tr_test) & set(rb_test), key=lambda s: int(s) if s.isdigit() else s)
    test_diff = [u for u in users if tr_test[u] != rb_test[u]]
    valid_diff = [u for u in users if tr_valid.get(u) != rb_valid.get(u)]
    max_len = int(rb_dataset.config["MAX_ITEM_LIST_LENGTH"])
    hist_diff = [u for u in users if tr_test_hist[u][-max_len:] != rb_test_hist[u]]
    hist_set_diff = [u for u in users if sorted(tr_test_hist[u][-max_len:]) != sorted(rb_test_hist[u])]

    # --- why: RecBole orders by its *normalized float32* timestamp (ml-100k.yaml sets
    # normalize_all: True; FLOAT fields become torch.float32), with stable sorts (np.argsort
    # kind="stable" in Interaction.sort) on file order. Reproduce both rules on the raw file.
    ts = frame["timestamp"].to_numpy()
    norm32 = ((ts - ts.min()) / (ts.max() - ts.min())).astype(np.float32)
    sim = frame[["user_id", "item_id"]].copy()
    sim["row"] = np.arange(len(sim))
    sim["user_code"] = pd.factorize(sim["user_id"])[0]
    exact_test, exact_valid, exact_order = _simulate(sim, ts)
    f32_test, f32_valid, f32_order = _simulate(sim, norm32.astype(np.float64))
    moved = exact_order != f32_order
    users_reordered = len(set(sim["user_id"].to_numpy()[exact_order[moved]]))  # both orders group by user
    stable_exact_matches_textrec = (sum(exact_test[u] != tr_test[u] for u in users),
                                    sum(exact_valid[u] != tr_valid[u] for u in users))
    f32_matches_recbole = (sum(f32_test[u] != rb_test[u] for u in users),
                           sum(f32_valid[u] != rb_valid[u] for u in users))
    # Is RecBole's own stored timestamp the float32 value we computed?
    rb_ts = test_data._dataset.inter_feat[rb_dataset.time_field].numpy()
    rb_ts_dtype = str(test_data._dataset.inter_feat[rb_dataset.time_field].dtype)

    # Ties in the raw data and how each tool breaks them.
    ev = tr_ds.sorted_interactions()
    pos = ev.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
    last, second = ev[pos == 0].set_index("user"), ev[pos == 1].set_index("user")
    tied_users = [str(tr_ds.user_ids[u]) for u in last.index if last.at[u, "timestamp"] == second.at[u, "timestamp"]]
    tied_agree = sum(tr_test[u] == rb_test[u] and tr_valid[u] == rb_valid[u] for u in tied_users)
    # Pairs of distinct seconds that float32 normalization merges, within a user.
    by_user = sim.assign(ts=ts, n32=norm32).sort_values(["user_code", "ts", "row"], kind="stable")
    same_user = by_user["user_code"].to_numpy()[1:] == by_user["user_code"].to_numpy()[:-1]
    merged = same_user & (np.diff(by_user["ts"].to_numpy()) > 0) & (np.diff(by_user["n32"].to_numpy()) == 0)
    inverted = merged & (np.diff(by_user["row"].to_numpy()) < 0)
    span = float(ts.max() - ts.min())
    resolution = np.spacing(norm32).astype(np.float64) * span  # seconds per float32 step

    def example(u):
        evs = sim.assign(ts=ts, n32=norm32)[sim["user_id"] == u]
        tail = set(evs.sort_values(["ts", "row"]).index[-3:]) | set(evs.sort_values(["n32", "row"]).index[-3:])
        evs = evs.loc[sorted(tail)].sort_values(["ts", "row"])
        return {
            "user": u,
            "textrec": {"valid": tr_valid[u], "test": tr_test[u]},
            "recbole": {"valid": rb_valid[u], "test": rb_test[u]},
            "last_events by exact time (item, timestamp, file_row, recbole_float32_time)": [
                [r.item_id, int(r.ts), int(r.row), float(r.n32)] for r in evs.itertuples()],
        }

    diff_users = sorted(set(test_diff) | set(valid_diff), key=lambda s: int(s) if s.isdigit() else s)
    tied_examples = [example(u) for u in tied_users[:2]]
    return {
        "users_compared": len(users),
        "users_textrec": len(tr_test),
        "users_recbole": len(rb_test),
        "test_targets_differ": len(test_diff),
        "valid_targets_differ": len(valid_diff),
        f"test_histories_differ_in_order (last {max_len} items)": len(hist_diff),
        f"test_histories_differ_as_sets (last {max_len} items)": len(hist_set_diff),
        "differing_users": diff_users,
        "examples": [example(u) for u in diff_users[:max_examples]],
        "raw_last_two_events_tied (same second)": len(tied_users),
        "tied_users_where_both_agree": int(tied_agree),
        "tied_examples": tied_examples,
        "recbole_time_field": {"dtype": rb_ts_dtype, "normalize_all": bool(rb_dataset.config["normalize_all"]),
                               "matches_float32_minmax_of_raw": bool(np.isin(rb_ts, norm32).all()),
                               "seconds_per_float32_step": {"min": round(float(resolution.min()), 3),
                                                            "median": round(float(np.median(resolution)), 3),
                                                            "max": round(float(resolution.max()), 3)}},
        "within_user_adjacent_events_in_distinct_seconds_merged_by_float32": int(merged.sum()),
        "of_which_file_order_contradicts_time": int(inverted.sum()),
        "users_whose_full_event_order_differs": users_reordered,
        "check_stable_sort_exact_timestamps_vs_textrec (test, valid differences)": list(stable_exact_matches_textrec),
        "check_stable_sort_float32_timestamps_vs_recbole (test, valid differences)": list(f32_matches_recbole),
        "why": (
            "Both tools break ties by source-file row order: RecBole sorts with np.argsort(kind='stable') "
            "(SequentialDataset.data_augmentation sorts by [user, time], Dataset.build by time, both stable) on "
            "the file order it loaded, exactly textrec's (timestamp, row) rule - so the many users whose last two "
            "events share a second agree. The differences come from RecBole's timestamp itself: the bundled "
            "ml-100k.yaml sets normalize_all: True, so the timestamp is min-max scaled to [0, 1] and stored as "
            "torch.float32, whose resolution over the ML-100K time span is about 1 s near the end of the range. "
            "Events one second apart can collapse onto the same float32 value; the stable sort then falls back to "
            "file order, which for a few users puts the earlier-second event last. Reproducing the order with "
            "float32-normalized timestamps + file order gives RecBole's targets exactly; with exact timestamps + "
            "file order it gives textrec's (see the two check_* entries)."),
    }


def filtering_report(rb_dataset, inter_path: Path) -> dict:
    frame = read_inter_file(inter_path)
    cfg = rb_dataset.config
    out = {
        "file_events": len(frame), "file_users": int(frame["user_id"].nunique()),
        "file_items": int(frame["item_id"].nunique()),
        "recbole_events": int(len(rb_dataset.inter_feat)), "recbole_users": int(rb_dataset.user_num - 1),
        "recbole_items": int(rb_dataset.item_num - 1),
        "note": "counted after create_dataset (filtering), before the sequential augmentation; RecBole's "
                "user_num/item_num include the [PAD] id 0, subtracted here.",
        "filters": {k: jsonable(cfg[k]) for k in ("val_interval", "user_inter_num_interval",
                                                  "item_inter_num_interval", "rm_dup_inter", "threshold",
                                                  "filter_inter_by_user_or_item", "load_col")},
        "duplicate_user_item_pairs_in_file": int(frame.duplicated(["user_id", "item_id"]).sum()),
    }
    out["nothing_dropped"] = (out["file_events"] == out["recbole_events"] and out["file_users"] == out["recbole_users"]
                              and out["file_items"] == out["recbole_items"])
    return out


# ---------------------------------------------------------------------------------------------
# one model
# ---------------------------------------------------------------------------------------------
def run_model(model_name: str, args, checkpoint_dir: str, state: dict) -> dict:
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config, overrides = make_config(model_name, args, checkpoint_dir)
    init_seed(config["seed"], config["reproducibility"])
    torch.set_num_threads(args.threads)
    LOG.info("=== %s: config built (epochs cap %d, stopping_step %d, seed %d, threads %d)", model_name,
             config["epochs"], config["stopping_step"], config["seed"], torch.get_num_threads())

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    inter_path = recbole_data_path() / "ml-100k" / "ml-100k.inter"
    nan_cells = int(dataset.inter_feat.isna().sum().sum())
    filtering = filtering_report(dataset, inter_path)
    LOG.info("%s", dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_seconds = time.perf_counter() - t0

    if "target_agreement" not in state:
        agreement = target_agreement(dataset, valid_data, test_data, inter_path)
        agreement["recbole_filtering"] = filtering
        agreement["recbole_inter_nan_cells (pandas-3 fillna no-op is harmless if 0)"] = nan_cells
        state["target_agreement"] = agreement
        state["agreement_signature"] = _signature(dataset, valid_data, test_data)
        LOG.info("target agreement: %d users, test differ %d, valid differ %d", agreement["users_compared"],
                 agreement["test_targets_differ"], agreement["valid_targets_differ"])
    else:
        same = _signature(dataset, valid_data, test_data) == state["agreement_signature"]
        state["target_agreement"].setdefault("same_split_for_models", {})[model_name] = same
    if args.agreement_only:
        return {}

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    LOG.info("%s", model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    train_s, valid_s, scores = [], [], []
    orig_train, orig_valid = trainer._train_epoch, trainer._valid_epoch

    def timed_train(*a, **k):
        t = time.perf_counter()
        r = orig_train(*a, **k)
        train_s.append(time.perf_counter() - t)
        return r

    def timed_valid(*a, **k):
        t = time.perf_counter()
        r = orig_valid(*a, **k)
        valid_s.append(time.perf_counter() - t)
        return r

    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
    t_fit = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=True, show_progress=False,
        callback_fn=lambda epoch, score: scores.append((epoch, float(score))))
    train_seconds = time.perf_counter() - t_fit

    # RecBole's early_stopping keeps the *latest* epoch whose score >= the best so far.
    best_epoch, best = None, -np.inf
    for epoch, score in scores:
        if score >= best:
            best_epoch, best = epoch, score

    t = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    first_eval_s = time.perf_counter() - t
    times = []
    for _ in range(args.inference_repeats):
        t = time.perf_counter()
        again = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        times.append(time.perf_counter() - t)
    assert metrics_of(again) == metrics_of(test_result), "re-evaluation changed the test metrics"
    n_test_users = len(test_data._dataset)
    infer_s = float(np.median(times))
    LOG.info("%s best valid %s | test %s", model_name, metrics_of(best_valid_result), metrics_of(test_result))

    history = [{"epoch": e + 1, "train_loss": round(float(trainer.train_loss_dict.get(e, np.nan)), 4),
                "train_s": round(train_s[i], 2) if i < len(train_s) else None,
                "valid_s": round(valid_s[i], 2) if i < len(valid_s) else None,
                "valid_NDCG@10": round(s, 6)} for i, (e, s) in enumerate(scores)]
    return {
        "valid": metrics_of(best_valid_result),
        "test": metrics_of(test_result),
        "seconds_per_epoch": round(float(np.mean(train_s)), 2) if train_s else None,
        "valid_eval_seconds_per_epoch": round(float(np.mean(valid_s)), 2) if valid_s else None,
        "epochs_run": len(train_s),
        "best_epoch": None if best_epoch is None else best_epoch + 1,
        "epoch_numbering": "1-based (RecBole's log numbers epochs from 0)",
        "stopped_early": len(train_s) < config["epochs"],
        "best_valid_score (NDCG@10)": round(float(best_valid_score), 6),
        "train_seconds": round(train_seconds, 1),
        "train_seconds_note": "wall time of trainer.fit: training epochs + per-epoch valid evaluation + checkpoints",
        "data_prep_seconds": round(data_seconds, 1),
        "inference_users_per_s": round(n_test_users / infer_s, 1),
        "inference": {"test_users": n_test_users, "median_seconds": round(infer_s, 3),
                      "repeats": args.inference_repeats, "first_eval_seconds_incl_checkpoint_load": round(first_eval_s, 3),
                      "what": "trainer.evaluate(test_data) full-sort over all items, batch "
                              f"{config['eval_batch_size']}, metrics included"},
        "ranking_notes": "full ranking over all 1682 items; only the padding id is excluded - RecBole's "
                         "sequential full-sort does NOT mask items already in the user's history",
        "history": history,
        "n_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "config": recorded_config(config, model_name, overrides),
    }


def _signature(dataset, valid_data, test_data):
    out = []
    for dl in (valid_data, test_data):
        f = dl._dataset.inter_feat
        out.append((tuple(f[dataset.uid_field].tolist()), tuple(f[dataset.iid_field].tolist())))
    return out


# ---------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``textrec bench recbole``."""
    p.description = __doc__.split("\n\n")[0]
    p.add_argument("--models", nargs="+", default=["SASRec", "GRU4Rec"])
    p.add_argument("--epochs", type=positive_int, default=40, help="epoch cap (early stopping on valid NDCG@10)")
    p.add_argument("--stopping-step", type=positive_int, default=5,
                   help="RecBole stopping_step: stop after this many + 1 evaluations without improvement")
    add_threads_option(p)
    add_seed_option(p, 2020)
    p.add_argument("--inference-repeats", type=positive_int, default=3)
    p.add_argument("--name", default="recbole_ml-100k", help="result file stem")
    p.add_argument("--checkpoint-dir", default=None, help="default: a fresh temporary folder, removed at exit")
    p.add_argument("--agreement-only", action="store_true", help="only the split/target check, no training")
    add_output_options(p, "recbole")


def run(args: argparse.Namespace) -> int:
    """Run the RecBole models one by one, rewriting the result JSON after each."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    from textrec.benchmarks import recbole_shims

    try:
        shims = recbole_shims.apply()
        import recbole
    except ModuleNotFoundError as e:  # recbole is an optional extra with dependencies of its own
        print(f"textrec: error: RecBole cannot run here (missing module '{e.name}'): "
              f"pip install '.[bench]'", file=sys.stderr)
        return 2
    writer = writer_from_args(args, "recbole")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_name = f"{args.name}/{args.name}_{stamp}.log"  # the log sits in its result's folder
    log_path = writer.path(log_name)
    setup_logging(log_path)
    writer.record(log_name)
    LOG.info("command: %s", writer.metadata()["command"])
    LOG.info("log file: %s", log_path)

    warnings.filterwarnings("ignore", message=".*chained assignment.*")
    warnings.filterwarnings("ignore", message=".*non-writable.*")
    with contextlib.suppress(ImportError):
        from pandas.errors import ChainedAssignmentError
        warnings.filterwarnings("ignore", category=ChainedAssignmentError)

    import torch

    LOG.info("shims: %s", shims)

    own_ckpt = args.checkpoint_dir is None
    ckpt = args.checkpoint_dir or tempfile.mkdtemp(prefix="recbole_ckpt_")
    result = {}
    old = writer.existing(f"{args.name}.json")
    if old is not None and not args.agreement_only:
        with contextlib.suppress(ValueError, OSError):
            result = json.loads(old.read_text())
    result.update({
        "dataset": "ml-100k",
        "split": "leave_one_out (RecBole LS valid_and_test, order TO)",
        "evaluation": "full ranking over all items, metrics @10, one target per user; valid metrics are "
                      "from the best (early-stopping) epoch",
        "harness": f"RecBole {recbole.__version__}",
        "stack": {"torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        "shims": shims,
        "data_file": "recbole/dataset_example/ml-100k/ml-100k.inter (shipped in the recbole wheel)",
        "log": log_name,
    })
    result.setdefault("models", {})
    state: dict = {}
    try:
        with writer:
            for name in args.models:
                out = run_model(name, args, ckpt, state)
                result["target_agreement"] = state["target_agreement"]
                if out:
                    result["models"][name] = out
                path = writer.write_json(f"{args.name}.json", result)
                LOG.info("wrote %s (%s)", path, ", ".join(result["models"]) or "agreement only")
                if args.agreement_only:
                    break
            logging.getLogger().handlers.clear()  # release the log file before it is moved
    finally:
        if own_ckpt:
            shutil.rmtree(ckpt, ignore_errors=True)
    return 0
