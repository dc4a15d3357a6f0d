"""Tmall (IJCAI-15 repeat-buyers contest): ``user_log_format1.csv``, about 55 million rows.

``time_stamp`` is ``mmdd`` of one year (day resolution, so ties are common and
file order breaks them); ``action_type`` 0 click, 1 add-to-cart, 2 purchase,
3 add-to-favourite. Defaults: every action counts, 5-core.
"""

from __future__ import annotations

from input_pipeline.sources.delimited import DelimitedLayout, exact_header, reader_for
from input_pipeline.sources.manual import ManualSource, RawFormat

DATA_FILE = "user_log_format1.csv"
COLUMNS = ("user_id", "item_id", "cat_id", "seller_id", "brand_id", "time_stamp", "action_type")
ACTIONS = {"0": "click", "1": "add-to-cart", "2": "purchase", "3": "add-to-favourite"}
LAYOUT = DelimitedLayout(
    names=COLUMNS, user="user_id", item="item_id", timestamp="time_stamp",
    header=exact_header(COLUMNS, "Tmall user_log_format1.csv"),
    action="action_type", action_values=frozenset(ACTIONS), ends_with_line_break=True,
)


SOURCE = ManualSource(
    name="tmall",
    title="Tmall (IJCAI-15 repeat buyers prediction, data_format1)",
    homepage="https://tianchi.aliyun.com/dataset/42",
    how_to_get="sign in, accept the terms, download data_format1.zip",
    formats=lambda category: [
        RawFormat(DATA_FILE, reader_for(LAYOUT), "mmdd", "IJCAI-15 user log", distributed_as=("data_format1.zip",))
    ],
    default_k_core=5,
    actions=ACTIONS,
)
