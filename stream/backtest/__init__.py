"""Backtests and evaluations: replaying topic ranges or files through a worker (``replay``),
the report (``report``) and its plots (``plots``), and the offline evaluations
(``evaluation``). These may import pandas and matplotlib; the worker never imports them."""
