"""Alipay / Taobao (IJCAI-16 brick-and-mortar store contest): ``ijcai2016_taobao.csv``, about 44 million rows.

``time`` is ``yyyymmdd`` (day resolution); ``act_ID`` 0 click, 1 buy.
Defaults: every action counts, 5-core.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator, Optional

from input_pipeline.schema import Interactions
from input_pipeline.sources.delimited import DelimitedLayout, exact_header, read_delimited
from input_pipeline.sources.manual import ManualSource, RawFormat
from input_pipeline.sources.rows import RowCollector

DATA_FILE = "ijcai2016_taobao.csv"
COLUMNS = ("use_ID", "sel_ID", "ite_ID", "cat_ID", "act_ID", "time")
ACTIONS = {"0": "click", "1": "buy"}
LAYOUT = DelimitedLayout(
    names=COLUMNS, user="use_ID", item="ite_ID", timestamp="time",
    header=exact_header(COLUMNS, "IJCAI-16 ijcai2016_taobao.csv"),
    action="act_ID", action_values=frozenset(ACTIONS), ends_with_line_break=True,
)


def read(stream: BinaryIO, collector: RowCollector, actions: Optional[frozenset]) -> Iterator[Interactions]:
    return read_delimited(stream, collector.file, LAYOUT, collector, keep_actions=actions)


SOURCE = ManualSource(
    name="alipay",
    title="Alipay / Taobao (IJCAI-16 brick-and-mortar store recommendation)",
    homepage="https://tianchi.aliyun.com/dataset/53",
    how_to_get="sign in, accept the terms, download ijcai2016_taobao.csv (or its archive)",
    formats=lambda category: [RawFormat(DATA_FILE, read, "yyyymmdd", "IJCAI-16 Taobao log")],
    default_k_core=5,
    actions=ACTIONS,
)
