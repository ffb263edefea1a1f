"""Writing files so that a killed process never leaves a half-written one behind."""

from storage.atomic import (
    atomic_directory,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    read_json,
    read_jsonl,
)

__all__ = ["atomic_directory", "atomic_write_json", "atomic_write_jsonl", "atomic_write_text", "read_json", "read_jsonl"]
