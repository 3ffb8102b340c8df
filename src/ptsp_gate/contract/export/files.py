"""The generated files: their canonical text, writing them, and the command that does."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from ptsp_gate.contract.export.asyncapi import asyncapi_document
from ptsp_gate.contract.export.json_schema import PAYLOADS, JsonObject, payload_json_schema

DEFAULT_OUTPUT_DIR: Final = Path("schemas")
REGENERATE_COMMAND: Final = "python -m ptsp_gate.contract.export schemas"
ASYNCAPI_FILE_NAME: Final = "asyncapi.json"


def render(document: JsonObject) -> str:
    """The canonical text of a generated document."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """Every generated file: name -> text."""
    files = {p.file_name: render(payload_json_schema(p)) for p in PAYLOADS}
    files[ASYNCAPI_FILE_NAME] = render(asyncapi_document())
    return files


def write_all(directory: Path) -> list[Path]:
    """Write every generated file into `directory` (created if needed); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ptsp_gate.contract.export",
        description="Regenerate the JSON Schema and AsyncAPI artefacts of the v1 contract.",
    )
    parser.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help="output directory (default: ./schemas)",
    )
    args = parser.parse_args(argv)
    for path in write_all(args.directory):
        print(path)
    return 0
