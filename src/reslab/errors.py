"""Errors meant for people: the CLI prints their message instead of a traceback."""


class ReslabError(Exception):
    """Base of reslab's own failures that are not ValueErrors (bad input) or missing files."""
