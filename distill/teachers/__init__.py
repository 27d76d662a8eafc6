"""Teachers: who answers the instructions (text) and, when white-box, gives logits."""

from distill.teachers.base import Answer, Failure, Journal, Request, Teacher, build_teacher

__all__ = ["Answer", "Failure", "Journal", "Request", "Teacher", "build_teacher"]
