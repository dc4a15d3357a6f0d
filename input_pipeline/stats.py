"""Summary statistics of a prepared dataset (preparing it first if needed).

    python -m input_pipeline.stats --dataset=tmall

Prints users, items, interactions, sequence length (mean, median, max),
density and time range, so a dataset can be checked against its paper's
table before any training.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Optional, Sequence

import numpy as np

from input_pipeline.prepare import PreparedData

TIME_FORMATTERS = {
    "unix seconds": lambda value: datetime.datetime.fromtimestamp(value, datetime.timezone.utc).isoformat(),
    "unix milliseconds": lambda value: datetime.datetime.fromtimestamp(value / 1000, datetime.timezone.utc).isoformat(),
}


def statistics(data: PreparedData) -> dict:
    """The figures :func:`main` prints, as numbers."""
    lengths = np.diff(data.offsets)
    return {
        "users": data.num_users,
        "items": data.num_items,
        "interactions": int(len(data.items)),
        "mean_length": float(lengths.mean()),
        "median_length": float(np.median(lengths)),
        "max_length": int(lengths.max()),
        "density": len(data.items) / (data.num_users * data.num_items),
        "first_time": data.timestamps.min().item(),
        "last_time": data.timestamps.max().item(),
        "time_unit": data.report.time_unit,
    }


def format_statistics(name: str, figures: dict) -> str:
    show = TIME_FORMATTERS.get(figures["time_unit"], str)
    return "\n".join([
        f"dataset        {name}",
        f"users          {figures['users']:,}",
        f"items          {figures['items']:,}",
        f"interactions   {figures['interactions']:,}",
        f"length         mean {figures['mean_length']:.1f}, median {figures['median_length']:g}, "
        f"max {figures['max_length']:,}",
        f"density        {figures['density']:.3e}",
        f"time range     {show(figures['first_time'])} .. {show(figures['last_time'])} ({figures['time_unit']})",
    ])


def main(argv: Optional[Sequence[str]] = None) -> int:
    from tf_autosam.main import DATA_FIELDS, USAGE_ERROR, add_config_flags
    from tf_autosam.config import preset

    parser = argparse.ArgumentParser(prog="python -m input_pipeline.stats", description=__doc__.split("\n")[0])
    add_config_flags(parser, DATA_FIELDS)
    config = preset("default").replace(**vars(parser.parse_args(argv)))
    from input_pipeline.datasets import DatasetRequestError, load_dataset
    from input_pipeline.errors import DataError, DataUnavailableError

    try:
        data = load_dataset(
            config.dataset, **config.dataset_options(), log=lambda line: print(line, file=sys.stderr)
        )
    except (DatasetRequestError, DataError, DataUnavailableError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    print(format_statistics(config.dataset, statistics(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
