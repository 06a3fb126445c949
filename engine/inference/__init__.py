"""The inference library the CLI (`raclate predict | eval`), the app (Evaluate, Playground pages) and
the trainer's evaluation share: load a model for its task, run it, evaluate it. Qt-free.

    loading     load_for_task, detect_task, folder_kind, untrained_head, load_run_base, load_run_checkpoint
    encode      encode (embed texts through the input pipeline, engine/data/inputs.py), max_length_of
    predict     classify, tag, tag_text, fill_mask
    search      score_matrix, search, build_index, search_index, nearest, maxsim_map, corpus_from_rows
    evaluation  load_eval_data, remap_labels, eval_batches, evaluate_dataset, evaluate_retrieval, evaluate_file
"""
from engine.inference.encode import encode, max_length_of
from engine.inference.evaluation import (collated_batches, eval_batches, evaluate_dataset, evaluate_file,
                                         evaluate_retrieval, load_eval_data, remap_labels)
from engine.inference.loading import (detect_task, folder_kind, is_regression, load_for_task, load_run_base,
                                      load_run_checkpoint, untrained_head)
from engine.inference.predict import classify, fill_mask, tag, tag_text
from engine.inference.search import (CorpusIndex, build_index, corpus_from_rows, maxsim_map, nearest, score_blocks,
                                     score_matrix, search, search_index)

__all__ = [
    "encode", "max_length_of",
    "collated_batches", "eval_batches", "evaluate_dataset", "evaluate_file", "evaluate_retrieval", "load_eval_data",
    "remap_labels",
    "detect_task", "folder_kind", "is_regression", "load_for_task", "load_run_base", "load_run_checkpoint",
    "untrained_head",
    "classify", "fill_mask", "tag", "tag_text",
    "CorpusIndex", "build_index", "corpus_from_rows", "maxsim_map", "nearest", "score_blocks", "score_matrix", "search",
    "search_index",
]
