"""Data layer: load files/folders/Hub datasets into role-named ``datasets.Dataset`` splits, validate
them, tokenize once, and batch them for MLX (collators, length-grouped sampler). Imports no Qt."""
from engine.data import collators
from engine.data.args import DatasetArgs, TASKS, normalize_task
from engine.errors import DataError
from engine.data.labels import LabelInfo
from engine.data.loading import LoadedData, load_dataset
from engine.data.mapping import guess_columns
from engine.data.preview import Preview, preview
from engine.data.sampler import LengthGroupedBatchSampler
from engine.data.tokenize import prepare_tokenizer, render, tokenize_dataset
from engine.data.validation import Finding, Report, validate

__all__ = [
    "DatasetArgs", "DataError", "Finding", "LabelInfo", "LengthGroupedBatchSampler", "LoadedData", "Preview",
    "Report", "TASKS", "collators", "guess_columns", "load_dataset", "normalize_task", "prepare_tokenizer",
    "preview", "render", "tokenize_dataset", "validate",
]
