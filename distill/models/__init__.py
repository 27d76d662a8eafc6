"""Loading students and white-box teachers: the embedded models, pruning, 4-bit, LoRA."""

from distill.models.loading import (
    load_student,
    load_student_tokenizer,
    load_teacher,
    load_teacher_tokenizer,
    load_tokenizer,
)
from distill.models.sources import resolve_model_dir

__all__ = [
    "load_student",
    "load_student_tokenizer",
    "load_teacher",
    "load_teacher_tokenizer",
    "load_tokenizer",
    "resolve_model_dir",
]
