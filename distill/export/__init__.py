"""Shipping a trained student: merged Hugging Face folder, model card and provenance."""
