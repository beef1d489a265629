"""Usernames unique whatever their case at creation, for the commands Django ships."""
