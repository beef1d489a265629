"""Management commands of anim_gateway.usernames."""
