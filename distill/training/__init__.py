"""The DistillationModule, the train stage and its callbacks."""
