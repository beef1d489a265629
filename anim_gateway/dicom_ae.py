"""The DICOM rule for an AE title (PS3.5 table 6.2-1), which the listener's own title obeys."""

AE_TITLE_MAX_LENGTH = 16


def ae_title_problem(value: str) -> str | None:
    """Why ``value`` is not a DICOM AE title; None when it is one.

    The default character repertoire without control characters and backslash (the value
    separator), at most 16 characters, and not only spaces (which are not significant).
    """
    if not value.strip(" "):
        return "only spaces"
    if len(value) > AE_TITLE_MAX_LENGTH:
        return f"{len(value)} characters, {AE_TITLE_MAX_LENGTH} at most"
    if any(not " " <= character <= "~" for character in value):
        return "a control or non-ASCII character"
    if "\\" in value:
        return "a backslash"
    return None
