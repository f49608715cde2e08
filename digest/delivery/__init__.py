"""Stage 3, delivery: the send loop, the ledger, providers and suppressions."""
