"""Rows of a measurement file for the calibrate tests: the header, and a row with some fields changed."""

from dataclasses import replace

from tokenomy.calibrate.measurements import COLUMNS, Measurement

HEADER = ",".join(COLUMNS)


def changed_row(row: str, **changes: str) -> str:
    """`row` (a CSV line with every column of COLUMNS) with the named fields replaced."""
    values = dict(zip(COLUMNS, row.split(","), strict=True))
    values.update(changes)
    return ",".join(values[c] for c in COLUMNS)


def measurement(**changes: object) -> Measurement:
    """An offline output-throughput row of Llama 3.1 8B fp8 on one H100 run by TensorRT-LLM, with `changes`."""
    row = Measurement(
        id="r1",
        engine="tensorrt-llm",
        model="llama-3.1-8b",
        gpu="H100-SXM",
        num_gpus=1,
        tp=1,
        pp=1,
        precision="fp8",
        kv_precision="",
        isl=1024,
        osl=1024,
        dataset="fixed",
        load_kind="offline",
        load_value=None,
        metric="output_throughput",
        value=1000.0,
        unit="output tokens/s",
        scope="core",
        line=2,
    )
    return replace(row, **changes)  # type: ignore[arg-type]
