"""The data stage, by job: `instructions` (templates, mixture) -> `generation` (the teacher's
answers, ledger, store) -> `quality` (checks, dedup, decontamination, export) -> `batching` (the
DataModule); `cache` holds the white-box teacher's sparse logits."""
