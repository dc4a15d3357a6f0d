"""Preparation at scale: a generated Tmall-layout file of N rows through the real builder.

    python benchmarks/prepare_scale.py [--rows=5000000,55000000] [--work_dir=/tmp/tf_autosam_scale]

For each size: generate ``user_log_format1.csv`` (reused if already there),
then prepare it in a fresh process exactly as ``python -m input_pipeline.stats
--dataset=tmall`` does (stream, encode, dedupe, 5-core, sort, write the TFDS
dataset, read it back) and print wall time, rows/s and that process's peak
resident memory. Several sizes show how the cost grows.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import time

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from input_pipeline import synthetic  # noqa: E402  (after the path set-up above)


def generated_file(folder: pathlib.Path, rows: int, seed: int) -> pathlib.Path:
    """The raw file for ``rows``, generated once per (rows, seed)."""
    path = folder / synthetic.file_name("tmall")
    marker = folder / "ROWS"
    if path.exists() and marker.exists() and marker.read_text() == f"{rows} {seed}":
        return path
    started = time.perf_counter()
    path = synthetic.write_raw_file("tmall", folder, num_rows=rows, seed=seed)
    marker.write_text(f"{rows} {seed}")
    print(f"  generated {rows:,} rows ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - started:.0f} s")
    return path


def prepare_in_child(raw_folder: pathlib.Path, cache: pathlib.Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in GiB, printed statistics) of a fresh preparation process."""
    shutil.rmtree(cache, ignore_errors=True)
    command = [
        sys.executable, "-m", "input_pipeline.stats", "--dataset=tmall",
        f"--data_dir={cache}", f"--manual_dir={raw_folder}",
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"preparation failed (exit {os.waitstatus_to_exitcode(status)}): {' '.join(command)}")
    return seconds, usage.ru_maxrss / 2**20, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="5000000,55000000", help="Comma-separated row counts to prepare.")
    parser.add_argument("--work_dir", default="/tmp/tf_autosam_scale", help="Where generated files and prepared data go (several GB at 55M rows).")
    parser.add_argument("--seed", type=int, default=0, help="Generator seed.")
    parser.add_argument("--keep", action="store_true", help="Keep the generated files and prepared data (e.g. for train_speed.py --dataset=tmall).")
    args = parser.parse_args()
    work = pathlib.Path(args.work_dir)
    print(f"cores: {os.cpu_count()}")
    for rows in (int(value) for value in args.rows.split(",")):
        raw_folder, cache = work / f"raw-{rows}", work / f"cache-{rows}"
        print(f"{rows:,} rows:", flush=True)
        generated_file(raw_folder, rows, args.seed)
        seconds, peak_gib, statistics = prepare_in_child(raw_folder, cache)
        print(f"  prepared in {seconds:.0f} s = {rows / seconds:,.0f} rows/s; peak memory {peak_gib:.2f} GiB")
        print("  " + statistics.strip().replace("\n", "\n  "), flush=True)
        if not args.keep:
            shutil.rmtree(raw_folder, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
