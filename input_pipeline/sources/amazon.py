"""Amazon review data, any category, in the layouts it has been published in.

Accepted, for category C (file names matched case-insensitively):
- ``C.jsonl`` (2023 release): ``user_id``, ``parent_asin``, ``timestamp`` in ms;
- ``C.json`` / ``C_5.json`` (2018) and ``reviews_C_5.json`` / ``reviews_C.json``
  (2014): ``reviewerID``, ``asin``, ``unixReviewTime`` in seconds;
- ``C.csv`` (2018 ratings only, no header): ``item,user,rating,timestamp``;
- ``ratings_C.csv`` (2014 ratings only, no header): ``user,item,rating,timestamp``.
Every rating counts as an interaction; default 5-core, as in most sequential
recommendation papers on Amazon.
"""

from __future__ import annotations

from typing import Optional

from input_pipeline.sources import delimited, json_lines
from input_pipeline.sources.delimited import DelimitedLayout
from input_pipeline.sources.json_lines import JsonLayout
from input_pipeline.sources.manual import ManualSource, RawFormat

REVIEWS_2023 = JsonLayout(user="user_id", item="parent_asin", timestamp="timestamp", to_timestamp=int)
REVIEWS_2014_2018 = JsonLayout(user="reviewerID", item="asin", timestamp="unixReviewTime", to_timestamp=int)
RATINGS_2018 = DelimitedLayout(
    names=("item", "user", "rating", "timestamp"), user="user", item="item", timestamp="timestamp", ends_with_line_break=True
)
RATINGS_2014 = DelimitedLayout(
    names=("user", "item", "rating", "timestamp"), user="user", item="item", timestamp="timestamp", ends_with_line_break=True
)


def formats(category: Optional[str]) -> list[RawFormat]:
    """Accepted files for ``category``, newest release first."""
    if not category:
        return []
    reviews_2014_2018 = json_lines.reader_for(REVIEWS_2014_2018)
    return [
        RawFormat(f"{category}.jsonl", json_lines.reader_for(REVIEWS_2023), "unix milliseconds", "Amazon reviews 2023"),
        RawFormat(f"{category}_5.json", reviews_2014_2018, "unix seconds", "Amazon reviews 2018 (5-core)"),
        RawFormat(f"{category}.json", reviews_2014_2018, "unix seconds", "Amazon reviews 2018"),
        RawFormat(f"reviews_{category}_5.json", reviews_2014_2018, "unix seconds", "Amazon reviews 2014 (5-core)"),
        RawFormat(f"reviews_{category}.json", reviews_2014_2018, "unix seconds", "Amazon reviews 2014"),
        RawFormat(f"{category}.csv", delimited.reader_for(RATINGS_2018), "unix seconds", "Amazon ratings 2018"),
        RawFormat(f"ratings_{category}.csv", delimited.reader_for(RATINGS_2014), "unix seconds", "Amazon ratings 2014"),
    ]


SOURCE = ManualSource(
    name="amazon",
    title="Amazon review data (one category)",
    homepage="https://amazon-reviews-2023.github.io/ (2023), https://nijianmo.github.io/amazon/ (2018), "
             "https://jmcauley.ucsd.edu/data/amazon/ (2014)",
    how_to_get="download the reviews or ratings file of the category",
    formats=formats,
    default_k_core=5,
    needs_category=True,
)
