"""Alipay / Taobao (IJCAI-16 brick-and-mortar store contest): ``ijcai2016_taobao.csv``, about 44 million rows.

``time`` is ``yyyymmdd`` (day resolution); ``act_ID`` 0 click, 1 buy.
Defaults: every action counts, 5-core.
"""

from __future__ import annotations

from input_pipeline.sources.delimited import DelimitedLayout, exact_header, reader_for
from input_pipeline.sources.manual import ManualSource, RawFormat

DATA_FILE = "ijcai2016_taobao.csv"
COLUMNS = ("use_ID", "sel_ID", "ite_ID", "cat_ID", "act_ID", "time")
ACTIONS = {"0": "click", "1": "buy"}
LAYOUT = DelimitedLayout(
    names=COLUMNS, user="use_ID", item="ite_ID", timestamp="time",
    header=exact_header(COLUMNS, "IJCAI-16 ijcai2016_taobao.csv"),
    action="act_ID", action_values=frozenset(ACTIONS), ends_with_line_break=True,
)


SOURCE = ManualSource(
    name="alipay",
    title="Alipay / Taobao (IJCAI-16 brick-and-mortar store recommendation)",
    homepage="https://tianchi.aliyun.com/dataset/53",
    how_to_get="sign in, accept the terms, download ijcai2016_taobao.csv (or its archive)",
    formats=lambda category: [RawFormat(DATA_FILE, reader_for(LAYOUT), "yyyymmdd", "IJCAI-16 Taobao log")],
    default_k_core=5,
    actions=ACTIONS,
)
