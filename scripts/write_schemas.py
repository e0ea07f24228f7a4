"""Regenerate docs/schemas/*.schema.json from the typed results in src/tokenomy/results.py.

.venv/bin/python scripts/write_schemas.py          # write
.venv/bin/python scripts/write_schemas.py --check  # exit 1 when a committed schema differs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tokenomy.results import SCHEMAS, json_schema

OUT = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def rendered() -> dict[Path, str]:
    """Each schema file's path and text."""
    return {OUT / f"{name}.schema.json": json.dumps(json_schema(m), indent=2) + "\n" for name, m in SCHEMAS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for path, text in rendered().items():
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        sys.exit(f"stale schemas (run scripts/write_schemas.py): {', '.join(stale)}")


if __name__ == "__main__":
    main()
