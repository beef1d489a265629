"""The append-only, hash-chained audit log: the one writer, verification, checkpoints, exports."""
