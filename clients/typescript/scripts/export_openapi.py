"""Write the gateway's OpenAPI document to clients/typescript/openapi.json, the input of the
client's generated types (`npm run generate`, src/schema.ts).

    .venv/bin/python clients/typescript/scripts/export_openapi.py && (cd clients/typescript && npm run generate)

tests/integration/test_typescript_client.py fails when either file is stale.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

OUTPUT = Path(__file__).resolve().parents[1] / "openapi.json"


def openapi_text() -> str:
    """The document as the gateway serves it at /schema/openapi.json, in a stable form."""
    from gateway.app import create_app
    from gateway.settings import Settings

    with tempfile.TemporaryDirectory() as data_dir:  # building the app opens no database
        schema = create_app(Settings(data_dir=Path(data_dir))).openapi_schema.to_schema()
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    OUTPUT.write_text(openapi_text(), encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
