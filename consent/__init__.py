"""Parties and permissions: who may see what, and the one door every access goes through."""
