"""Rows of a measurement file for the calibrate tests: the header, and a row with some fields changed."""

from tokenomy.calibrate.measurements import COLUMNS

HEADER = ",".join(COLUMNS)


def changed_row(row: str, **changes: str) -> str:
    """`row` (a CSV line with every column of COLUMNS) with the named fields replaced."""
    values = dict(zip(COLUMNS, row.split(","), strict=True))
    values.update(changes)
    return ",".join(values[c] for c in COLUMNS)
