"""REST API of the consent app."""
