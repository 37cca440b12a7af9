"""Errors meant for people: the CLI prints their message instead of a traceback."""


class ReslabError(Exception):
    """Base of reslab's own failures that are not ValueErrors (bad input) or missing files."""


class NonFiniteScores(ReslabError, ValueError):
    """A network's outputs hold NaN or infinity (it diverged): no error rate and no
    prediction is read from them."""


def one_line(e: BaseException, limit: int = 300) -> str:
    """ "Type: first line of the message", for a warning about an error that was survived
    (compiler errors can run to pages)."""
    first = (str(e).splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:limit]}"
