"""App configuration of anim_gateway.usernames."""

from django.apps import AppConfig


class UsernamesConfig(AppConfig):
    name = "anim_gateway.usernames"
    label = "anim_usernames"
    verbose_name = "Usernames"
