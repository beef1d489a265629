"""Commands that replace Django's own, listed before django.contrib.auth in INSTALLED_APPS."""
