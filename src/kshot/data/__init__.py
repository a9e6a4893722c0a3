"""Data: reading tasks from ARSC, review JSON and `datasets` sources; tokenizing; sampling episodes."""

from .sampler import Episode, EpisodeSampler, Shape
from .sources import load_tasks
from .tasks import FixedTask, TaskCollection, TaskExamples
from .tokenization import collate, length_sorted_batches, tokenize_collection, tokenize_texts

__all__ = [
    "Episode",
    "EpisodeSampler",
    "Shape",
    "FixedTask",
    "TaskCollection",
    "TaskExamples",
    "collate",
    "length_sorted_batches",
    "load_tasks",
    "tokenize_collection",
    "tokenize_texts",
]
