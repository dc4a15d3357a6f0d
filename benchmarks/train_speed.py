"""Training and evaluation speed: sequences/s, ms/step, FLOPs per sequence, achieved GFLOP/s, ms per evaluated user.

    python benchmarks/train_speed.py [--preset=default] [--max_len=100] [--batch_size=128]
    python benchmarks/train_speed.py --variants=default,xla,mirrored --eval_users=0
    python benchmarks/train_speed.py --dataset=tmall --preset=reference --models=sasrec --eval_users=0

Runs the real training step (``model.fit``) on full-length synthetic windows
with the ML-100K catalogue size (or on a prepared dataset's real training
windows and catalogue, ``--dataset``), and, in the same process, measures this
machine's own fp32 matmul rate for scale; then times full-ranking evaluation
(the evaluator used for validation and test) on full-length histories.
Each (model, variant) runs in its own process, so its peak memory is its own:
``default`` (one device), ``xla`` (train step compiled with XLA,
``--jit_compile``), ``mirrored`` (MirroredStrategy over every GPU, or over the
CPU split into 2 logical devices), ``mixed`` (``--precision=mixed_bfloat16``;
fast on GPUs with bfloat16 units, slow on CPUs without them).
Shared machines are noisy: every figure is the median of ``--repeats`` timed
runs, and the ratios compare runs of the same invocation.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import tf_autosam  # noqa: F401  (selects tf-keras before TensorFlow loads)
import numpy as np
import tensorflow as tf

from input_pipeline import pipeline
from input_pipeline.datasets import load_dataset
from input_pipeline.prepare import PreparedData
from tf_autosam import distribution, models
from tf_autosam.evaluation import RankingEvaluator
from tf_autosam.config import INFERENCE_MODES, TrainerConfig, preset

ML100K_ITEMS = 1682


def training_flops_per_sequence(config: TrainerConfig, num_items: int) -> float:
    """Multiply-adds x2 of a forward pass, x3 for forward + backward (softmax over the catalogue or the negatives)."""
    d, length, ffn = config.hidden_size, config.max_len, config.ffn_size
    per_token_block = 2 * d * 3 * d + 2 * 2 * length * d + 2 * d * d + 2 * 2 * d * ffn
    per_token = config.num_blocks * per_token_block + 2 * d * ((config.num_negatives or num_items) + 1)
    return 3.0 * per_token * length


def matmul_gflops(shape_a: tuple[int, int], shape_b: tuple[int, int], repeats: int = 5) -> float:
    a, b = tf.random.normal(shape_a), tf.random.normal(shape_b)
    product = tf.function(tf.matmul)
    product(a, b).numpy()
    calls = max(1, int(2e10 // (2 * shape_a[0] * shape_a[1] * shape_b[1])))
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            result = product(a, b)
        result.numpy()
        rates.append(2 * shape_a[0] * shape_a[1] * shape_b[1] * calls / (time.perf_counter() - started) / 1e9)
    return statistics.median(rates)


def synthetic_windows(config: TrainerConfig, num_items: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(config.seed)
    shape = (config.batch_size * steps, config.max_len)
    return rng.integers(1, num_items + 1, size=shape, dtype=np.int32), rng.integers(1, num_items + 1, size=shape, dtype=np.int32)


def dataset_windows(data: PreparedData, config: TrainerConfig, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``steps`` batches of the dataset's real training windows, in a seeded random order."""
    inputs, targets = pipeline.training_windows(data.train_sequences(), config.max_len, config.window_stride)
    chosen = np.random.default_rng(config.seed).permutation(len(inputs))[: config.batch_size * steps]
    return inputs[chosen], targets[chosen]


def training_seconds_per_step(
    model: tf.keras.Model, config: TrainerConfig, windows: tuple[np.ndarray, np.ndarray], repeats: int
) -> float:
    model.compile(optimizer=models.recommender_optimizer(config), jit_compile=config.jit_compile)
    steps = len(windows[0]) // config.batch_size
    dataset = tf.data.Dataset.from_tensor_slices(windows).batch(config.batch_size, drop_remainder=True).cache()
    # With autotuning on, this prefetch-free dataset's iterator is released only when
    # tf.data's tuning thread wakes (10 ms, then doubling), so a timed fit ended at
    # 10 ms x (2^k - 1) and a 0.7 s step read as 1.02 s. The step is what is timed.
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = dataset.with_options(options)
    model.fit(dataset.take(3), verbose=0)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.fit(dataset, verbose=0)
        timings.append((time.perf_counter() - started) / steps)
    return statistics.median(timings)


def input_batches_per_second(config: TrainerConfig, windows: tuple[np.ndarray, np.ndarray], repeats: int) -> float:
    """The training input pipeline alone (shuffle, batch, prefetch): how fast it could feed a step."""
    dataset = pipeline.training_dataset(windows, config.batch_size, config.seed)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        batches = sum(1 for _ in dataset)
        rates.append(batches / (time.perf_counter() - started))
    return statistics.median(rates)


def evaluation_seconds_per_user(model: tf.keras.Model, config: TrainerConfig, num_items: int, users: int, repeats: int) -> float:
    rng = np.random.default_rng(config.seed)
    histories = list(rng.integers(1, num_items + 1, size=(users, config.max_len), dtype=np.int32))
    targets = rng.integers(1, num_items + 1, size=users, dtype=np.int32)
    dataset = pipeline.evaluation_dataset(histories, targets, config.max_len, config.eval_batch_size).cache()
    evaluator = RankingEvaluator(model)
    evaluator.evaluate(dataset)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        evaluator.evaluate(dataset)
        timings.append((time.perf_counter() - started) / users)
    return statistics.median(timings)


VARIANTS = ("default", "xla", "mirrored", "mixed")


def variant_config(config: TrainerConfig, variant: str) -> TrainerConfig:
    if variant == "xla":
        return config.replace(jit_compile=True)
    if variant == "mirrored":
        return config.replace(strategy="mirrored", cpu_devices=1 if tf.config.list_physical_devices("GPU") else 2)
    if variant == "mixed":
        return config.replace(precision="mixed_bfloat16")
    return config


def measure(args: argparse.Namespace, name: str, variant: str) -> dict:
    """One (model, variant) in this process: training step time, evaluation time, peak memory."""
    config = variant_config(base_config(args), variant).replace(model=name)
    distribution.split_cpu(config.cpu_devices)
    data = load_dataset(args.dataset, data_dir=args.data_dir, manual_dir=args.manual_dir, k_core=args.k_core) if args.dataset else None
    num_items = data.num_items if data else args.num_items
    config = config.for_catalogue(num_items)
    windows = dataset_windows(data, config, args.steps) if data else synthetic_windows(config, num_items, args.steps)
    tf.keras.utils.set_random_seed(config.seed)
    with distribution.make_strategy(config.strategy, num_items).scope():
        model = models.build_recommender(config, num_items)
        step = training_seconds_per_step(model, config, windows, args.repeats)
    # The model's own negatives: a preset asking for at least the catalogue trains a full softmax.
    result = {"step": step, "num_items": num_items, "num_negatives": model.num_negatives}
    if args.eval_users:
        result["evaluation"] = evaluation_seconds_per_user(model, config, num_items, args.eval_users, args.repeats)
    result["peak_rss_gib"] = peak_rss_gib()
    return result


def base_config(args: argparse.Namespace) -> TrainerConfig:
    return preset(args.preset).replace(
        max_len=args.max_len, batch_size=args.batch_size, sampler_warmup_epochs=0, inference_mode=args.inference_mode
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default", help="Config preset to time.")
    parser.add_argument("--max_len", type=int, default=100, help="Window length.")
    parser.add_argument("--batch_size", type=int, default=128, help="Sequences per step (the global batch under mirrored).")
    parser.add_argument("--num_items", type=int, default=ML100K_ITEMS, help="Catalogue size of the synthetic windows (ignored with --dataset).")
    parser.add_argument("--dataset", default=None, help="Time on this prepared dataset's training windows and catalogue instead (e.g. tmall; see python -m tf_autosam.main --help).")
    parser.add_argument("--data_dir", default=None, help="Data cache of --dataset (default: $TF_AUTOSAM_DATA_DIR or ~/.cache/tf_autosam).")
    parser.add_argument("--manual_dir", default=None, help="Folder of the hand-downloaded raw file of --dataset.")
    parser.add_argument("--k_core", type=int, default=None, help="k-core filter of --dataset (default: the dataset's own; 0 keeps the whole catalogue).")
    parser.add_argument("--models", default="sasrec,autosam", help="Comma-separated models to time.")
    parser.add_argument("--variants", default=None, help=f"Comma-separated execution variants ({', '.join(VARIANTS)}); the first is the baseline of the step-time ratios. [default: default,xla,mirrored, plus mixed on a GPU]")
    parser.add_argument("--inference_mode", default="deterministic", choices=INFERENCE_MODES,
                        help="AutoSAM's inference mode in the timed evaluation, whatever the preset's (the evaluation-cost target is set for deterministic).")
    parser.add_argument("--steps", type=int, default=20, help="Steps per timed run.")
    parser.add_argument("--eval_users", type=int, default=1024, help="Synthetic users per timed evaluation (0 = time training only).")
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs; the median is reported.")
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        name, variant = args.only.split(":")
        print(json.dumps(measure(args, name, variant)))
        return
    gpu = bool(tf.config.list_physical_devices("GPU"))
    variants = (args.variants or "default,xla,mirrored" + (",mixed" if gpu else "")).split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    config = base_config(args)
    machine_large = matmul_gflops((2048, 2048), (2048, 2048))
    machine_block = matmul_gflops((config.batch_size * config.max_len, config.hidden_size), (config.hidden_size, config.hidden_size))
    print(f"devices: {', '.join(d.name for d in tf.config.list_physical_devices())}; "
          f"intra-op threads {tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}")
    print(f"machine fp32 matmul: {machine_large:.0f} GFLOP/s (2048x2048), {machine_block:.0f} GFLOP/s "
          f"([{config.batch_size * config.max_len}x{config.hidden_size}]x[{config.hidden_size}x{config.hidden_size}])")
    print(f"windows: {'real training windows of ' + args.dataset if args.dataset else 'synthetic'}; preset {args.preset}: "
          f"d {config.hidden_size}, {config.num_blocks} blocks, {config.num_heads} heads, max_len {config.max_len}, batch {config.batch_size}")
    windows = synthetic_windows(config, args.num_items, args.steps)
    print(f"input pipeline alone: {input_batches_per_second(config, windows, args.repeats):.0f} batches/s "
          f"(synthetic windows of this shape)")
    baseline = {}
    for name in args.models.split(","):
        for variant in variants:
            command = [sys.executable, __file__, *sys.argv[1:], f"--only={name}:{variant}"]
            finished = subprocess.run(command, capture_output=True, text=True)
            if finished.returncode != 0:
                print(f"  {name:<8} {variant:<9} failed: {finished.stderr.strip().splitlines()[-1] if finished.stderr.strip() else finished.returncode}")
                continue
            result = json.loads(finished.stdout.strip().splitlines()[-1])
            step = result["step"]
            baseline.setdefault(name, step)
            line = (f"  {name:<8} {variant:<9} {config.batch_size / step:6.0f} sequences/s  {step * 1000:7.1f} ms/step  "
                    f"x{baseline[name] / step:.2f} the speed of {variants[0]}  peak RSS {result['peak_rss_gib']:.2f} GiB")
            if "evaluation" in result:
                mode = f" ({args.inference_mode})" if name == "autosam" else ""
                line += f"  | evaluation{mode} {result['evaluation'] * 1000:.2f} ms/user"
            if name == "sasrec" and variant == variants[0]:
                flops = training_flops_per_sequence(config.replace(num_negatives=result["num_negatives"]), result["num_items"])
                achieved = flops * config.batch_size / step / 1e9
                line += f"  {flops / 1e6:.0f} MFLOP/sequence, {achieved:.0f} GFLOP/s ({achieved / machine_large:.0%} of the matmul rate)"
            print(line, flush=True)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


if __name__ == "__main__":
    main()
