"""Instruction templates in six languages and the mixture that turns weights into exact quotas."""
