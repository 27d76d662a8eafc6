"""Asking the teacher: the requests, the ledger of what was paid for, progress."""
