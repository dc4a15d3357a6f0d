"""Yelp Open Dataset reviews: ``yelp_academic_dataset_review.json``, about 7 million JSON lines.

A review is an interaction of ``user_id`` with ``business_id`` at ``date``
("YYYY-MM-DD HH:MM:SS", read as UTC seconds). Defaults: every review, 5-core,
no time window.
"""

from __future__ import annotations

import datetime
from input_pipeline.sources.json_lines import JsonLayout, reader_for
from input_pipeline.sources.manual import ManualSource, RawFormat

DATA_FILE = "yelp_academic_dataset_review.json"


def utc_seconds(text: str) -> int:
    """Seconds since 1970 of a naive "YYYY-MM-DD HH:MM:SS" read as UTC."""
    moment = datetime.datetime.fromisoformat(text)
    return int(moment.replace(tzinfo=moment.tzinfo or datetime.timezone.utc).timestamp())


LAYOUT = JsonLayout(user="user_id", item="business_id", timestamp="date", to_timestamp=utc_seconds)


SOURCE = ManualSource(
    name="yelp",
    title="Yelp Open Dataset (reviews)",
    homepage="https://www.yelp.com/dataset",
    how_to_get="accept the dataset licence, download the JSON dataset (yelp_dataset.tar)",
    formats=lambda category: [RawFormat(DATA_FILE, reader_for(LAYOUT), "unix seconds", "Yelp reviews", distributed_as=("yelp_dataset.tar", "yelp_dataset.tgz"))],
    default_k_core=5,
)
