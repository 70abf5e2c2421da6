"""Quoting what a client sent inside an error message, never more than a short excerpt."""

QUOTE_LIMIT = 100


def quoted(value, limit: int = QUOTE_LIMIT) -> str:
    """repr() of a value, cut to `limit` characters of its text, saying how long it was."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(value) if not isinstance(value, str) else repr(text)
    return repr(text[:limit]) + f"… ({len(text):,} characters)"
