"""Quality on a real dataset: mean and std of test metrics over seeds (full ranking, history masked).

    python benchmarks/quality.py --dataset=ml100k --max_lens=50,100 --seeds=3

Every run goes through the same path as the CLI (``tf_autosam.training``) and
keeps its run directory under ``--run_root``; the table is printed and saved
as ``quality.json`` there.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics

import tf_autosam  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
from input_pipeline.cache import atomic_write_text
from input_pipeline.datasets import load_dataset
from tf_autosam.config import preset
from tf_autosam.metrics import DEFAULT_CUTOFFS
from tf_autosam.run_directory import RunDirectory
from tf_autosam.training import run_training

METRICS = [f"{name}@{k}" for k in DEFAULT_CUTOFFS for name in ("NDCG", "Recall")] + ["MRR@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml100k", help="Dataset name (as for tf_autosam.main).")
    parser.add_argument("--data_path", default=None, help="CSV file for --dataset=csv.")
    parser.add_argument("--data_dir", default=None, help="Data cache directory.")
    parser.add_argument("--models", default="sasrec,popularity", help="Comma-separated models to compare.")
    parser.add_argument("--preset", default="default", help="Config preset of the trained models.")
    parser.add_argument("--max_lens", default="50,100", help="Comma-separated window lengths.")
    parser.add_argument("--seeds", type=int, default=3, help="Number of seeds (1..N) per setting.")
    parser.add_argument("--overrides", default="{}", help="JSON object of extra config overrides, e.g. '{\"dropout\": 0.3}'.")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0 = all cores); run several scripts with 1 each to use cores in parallel.")
    parser.add_argument("--run_root", default="runs/quality", help="Where the runs and quality.json go.")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    data = load_dataset(args.dataset, data_path=args.data_path, data_dir=args.data_dir)
    root = pathlib.Path(args.run_root)
    table = []
    for model in args.models.split(","):
        for max_len in [int(v) for v in args.max_lens.split(",")]:
            seeds = range(1, args.seeds + 1) if model != "popularity" else range(1, 2)
            runs = []
            for seed in seeds:
                config = preset(args.preset).replace(
                    dataset=args.dataset, model=model, max_len=max_len, seed=seed, verbose=0, **json.loads(args.overrides)
                )
                run = RunDirectory(root / f"{model}-len{max_len}-seed{seed}")
                result = run_training(config, data, run, log=lambda line: None)
                print(f"{model} max_len {max_len} seed {seed}: test NDCG@10 {result['test']['NDCG@10']:.4f} "
                      f"Recall@10 {result['test']['Recall@10']:.4f} (best epoch {result['best_epoch']}, "
                      f"{result['train_seconds']:.0f}s)", flush=True)
                runs.append(result)
            row = {"model": model, "max_len": max_len, "seeds": len(runs)}
            for name in METRICS:
                values = [r["test"][name] for r in runs]
                row[name] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
            table.append(row)

    print(f"\n{args.dataset}: test metrics, mean ± std over seeds (full ranking, history masked)")
    print(f"{'model':<12}{'max_len':>8}{'seeds':>6}" + "".join(f"{n:>18}" for n in METRICS))
    for row in table:
        cells = "".join(f"{row[n]['mean']:>11.4f} ±{row[n]['std']:.4f}" for n in METRICS)
        print(f"{row['model']:<12}{row['max_len']:>8}{row['seeds']:>6}{cells}")
    atomic_write_text(root / "quality.json", json.dumps({"args": vars(args), "table": table}, indent=2))


if __name__ == "__main__":
    main()
