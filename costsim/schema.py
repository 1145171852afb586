"""``python -m costsim.schema``: print the JSON Schema of a schedule spec."""

from __future__ import annotations

import argparse
import json

from costsim.errors import cli_errors
from costsim.spec import ScheduleSpec


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costsim.schema", description=__doc__)
    parser.parse_args(argv)
    print(json.dumps(ScheduleSpec.model_json_schema(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
