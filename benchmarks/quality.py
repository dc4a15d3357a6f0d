"""Quality on a real dataset: mean and std of test metrics over seeds (full ranking, history masked).

    python benchmarks/quality.py --dataset=ml100k --models=sasrec,autosam,popularity --max_lens=50,100 --seeds=5
    python benchmarks/quality.py --backbone=gru4rec --models=sasrec,autosam --max_lens=50 --seeds=3

Every run goes through the same path as the CLI (``tf_autosam.training``) and
keeps its run directory under ``--run_root``; a run directory there that
already holds a finished run of a config that trains the same (the plain
backbone ignores the sampler's settings) is evaluated, not retrained, so an
interrupted table resumes where it stopped. Model ``sasrec`` is the plain
``--backbone`` (no sampler), ``autosam`` the same backbone fed by the sampler.
AutoSAM runs are evaluated in each inference mode from their best checkpoint,
with the share of behaviours each mode keeps; AutoSAM (deterministic) is
compared with the plain backbone user by user (mean per-user NDCG@10 over the
seeds, paired permutation test). On a
planted-noise log (``python -m input_pipeline.planted_noise``) pass the same
CSV as ``--noise_labels`` to also get how well keep probabilities separate
noise from real behaviour (ROC AUC). The table is printed and saved as
``quality.json`` under ``--run_root``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics

import numpy as np

import tf_autosam  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
from input_pipeline.cache import atomic_write_text
from input_pipeline.datasets import load_dataset
from input_pipeline.planted_noise import read_noise_labels
from tf_autosam.backbones import REGISTRY as BACKBONES
from tf_autosam.config import INFERENCE_MODES, preset
from tf_autosam.evaluation import RankingEvaluator, inference_keep_rate
from tf_autosam.inspection import noise_separation
from tf_autosam.metrics import DEFAULT_CUTOFFS, metrics_from_ranks, paired_permutation_test
from tf_autosam.metrics import per_user_ndcg as ndcg_of
from tf_autosam.run_directory import RunDirectory
from tf_autosam.training import EvaluationData, load_best_model, run_training

METRICS = [f"{name}@{k}" for k in DEFAULT_CUTOFFS for name in ("NDCG", "Recall")] + ["MRR@10"]
# Config fields this script sets itself for every run; --overrides may not set them too.
CONTROLLED_FIELDS = {"dataset", "data_path", "data_dir", "model", "backbone", "max_len", "seed", "verbose"}


def _evaluate_run(run: RunDirectory, data, evaluation: EvaluationData, model_name: str, modes: list[str],
                  noise_labels) -> dict[str, dict]:
    """Test metrics, per-user test ranks and (AutoSAM) keep rate and noise separation for each inference mode."""
    results = {}
    for mode in modes if model_name == "autosam" else ["-"]:
        model = load_best_model(run.path, data, **({"inference_mode": mode} if model_name == "autosam" else {}))
        ranks, _ = RankingEvaluator(model).ranks(evaluation.test)
        entry = {"test": metrics_from_ranks(ranks), "ranks": ranks}
        if model_name == "autosam":
            entry["keep_rate"] = inference_keep_rate(model, evaluation.test)
            if noise_labels is not None:
                entry["noise"] = noise_separation(model, data, noise_labels)
        results[mode] = entry
    return results


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml100k", help="Dataset name (as for tf_autosam.main).")
    parser.add_argument("--data_path", default=None, help="CSV file for --dataset=csv.")
    parser.add_argument("--data_dir", default=None, help="Data cache directory.")
    parser.add_argument("--models", default="sasrec,autosam,popularity", help="Comma-separated models to compare.")
    parser.add_argument("--backbone", default="sasrec", choices=sorted(BACKBONES), help="Backbone of the sasrec and autosam models.")
    parser.add_argument("--preset", default=None, help="Config preset of the trained models (default: the backbone's own preset).")
    parser.add_argument("--max_lens", default="50,100", help="Comma-separated window lengths.")
    parser.add_argument("--seeds", type=int, default=3, help="Number of seeds per setting: first_seed .. first_seed + N - 1.")
    parser.add_argument("--first_seed", type=int, default=1, help="First seed (to spread the seeds of one table over several processes).")
    parser.add_argument("--inference_modes", default=",".join(INFERENCE_MODES), help="AutoSAM inference modes to evaluate each run in.")
    parser.add_argument("--noise_labels", default=None, help="Planted-noise CSV (with is_noise) of this dataset: also report the sampler's noise separation.")
    parser.add_argument("--overrides", default="{}", help="JSON object of extra config overrides, e.g. '{\"dropout\": 0.3}'.")
    parser.add_argument("--autosam_overrides", default="{}", help="JSON object of config overrides for the autosam runs only, on top of --overrides (AutoSAM settings against one baseline).")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0 = all cores); run several scripts with 1 each to use cores in parallel.")
    parser.add_argument("--run_root", default="runs/quality", help="Where the runs and quality.json go.")
    args = parser.parse_args()
    base_overrides = json.loads(args.overrides)
    autosam_overrides = {**base_overrides, **json.loads(args.autosam_overrides)}
    controlled = CONTROLLED_FIELDS & set(autosam_overrides)
    if controlled:
        parser.error(f"--overrides cannot set {sorted(controlled)}: use this script's own flags")
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    data = load_dataset(args.dataset, data_path=args.data_path, data_dir=args.data_dir)
    noise_labels = read_noise_labels(args.noise_labels) if args.noise_labels else None
    modes = args.inference_modes.split(",")
    root = pathlib.Path(args.run_root)
    table, per_user_ndcg = [], {}
    for max_len in [int(v) for v in args.max_lens.split(",")]:
        for model_name in args.models.split(","):
            seeds = range(args.first_seed, args.first_seed + (args.seeds if model_name != "popularity" else 1))
            by_mode: dict[str, list[dict]] = {}
            for seed in seeds:
                config = preset(args.preset or args.backbone).replace(
                    dataset=args.dataset, data_path=args.data_path, data_dir=args.data_dir, model=model_name,
                    backbone=args.backbone, max_len=max_len, seed=seed, verbose=0,
                    **(autosam_overrides if model_name == "autosam" else base_overrides),
                )
                run = RunDirectory(root / f"{model_name}-{args.backbone}-len{max_len}-seed{seed}")
                result = run.finished_results(config.for_catalogue(data.num_items))
                if result is None:
                    result = run_training(config, data, run, log=lambda line: None)
                else:
                    print(f"reusing the finished run {run.path} (a config that trains the same)", flush=True)
                evaluation = EvaluationData.from_prepared(data, config)
                for mode, entry in _evaluate_run(run, data, evaluation, model_name, modes, noise_labels).items():
                    by_mode.setdefault(mode, []).append(entry)
                print(f"{model_name} max_len {max_len} seed {seed}: test NDCG@10 {result['test']['NDCG@10']:.4f} "
                      f"Recall@10 {result['test']['Recall@10']:.4f} (best epoch {result['best_epoch']}, "
                      f"{result['train_seconds']:.0f}s)", flush=True)
            for mode, entries in by_mode.items():
                row = {"model": model_name, "max_len": max_len, "mode": mode, "seeds": len(entries)}
                row.update({name: _mean_std([e["test"][name] for e in entries]) for name in METRICS})
                if "keep_rate" in entries[0]:
                    row["keep_rate"] = _mean_std([e["keep_rate"] for e in entries])
                if "noise" in entries[0]:
                    row["noise_auc"] = _mean_std([e["noise"]["auc"] for e in entries])
                table.append(row)
                per_user_ndcg[(model_name, max_len, mode)] = np.mean([ndcg_of(e["ranks"], 10) for e in entries], axis=0)

    print(f"\n{args.dataset}, backbone {args.backbone}: test metrics, mean ± std over seeds (full ranking, history masked)")
    print(f"{'model':<12}{'mode':<15}{'max_len':>8}{'seeds':>6}" + "".join(f"{n:>18}" for n in METRICS + ["keep_rate", "noise_auc"]))
    for row in table:
        cells = "".join(
            f"{row[n]['mean']:>11.4f} ±{row[n]['std']:.4f}" if n in row else f"{'-':>18}" for n in METRICS + ["keep_rate", "noise_auc"]
        )
        print(f"{row['model']:<12}{row['mode']:<15}{row['max_len']:>8}{row['seeds']:>6}{cells}")
    comparisons = []
    for (model_name, max_len, mode), autosam in per_user_ndcg.items():
        baseline = per_user_ndcg.get(("sasrec", max_len, "-"))
        if model_name == "autosam" and baseline is not None:
            p_value = paired_permutation_test(autosam, baseline)
            change = autosam.mean() / baseline.mean() - 1.0 if baseline.mean() else float("nan")
            comparisons.append({"max_len": max_len, "mode": mode, "ndcg10_change": change, "p_value": p_value})
            print(f"AutoSAM ({mode}) vs plain {args.backbone}, max_len {max_len}: NDCG@10 {change:+.1%} "
                  f"(per-user mean over seeds, paired permutation test p = {p_value:.3f})")
    atomic_write_text(root / "quality.json", json.dumps({"args": vars(args), "table": table, "paired": comparisons}, indent=2))


if __name__ == "__main__":
    main()
