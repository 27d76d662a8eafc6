"""The white-box teacher's sparse logit cache: its format, its builder, the `teacher-cache`
stage."""
