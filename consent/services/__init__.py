"""Services of the consent app: every write, each with its audit event in the same transaction."""
