"""Instruction templates, teacher-data generation, quality control, the store and the DataModule."""
