"""Data: reading files, data formats, and turning rows into training examples."""

from tunesmith.data.detect import detect_format
from tunesmith.data.example import Example
from tunesmith.data.formats import FORMATS, Format, RowError
from tunesmith.data.io import read_records
from tunesmith.data.load import LoadedData, load_examples, summarize_rejected

__all__ = [
    "FORMATS",
    "Example",
    "Format",
    "LoadedData",
    "RowError",
    "detect_format",
    "load_examples",
    "read_records",
    "summarize_rejected",
]
