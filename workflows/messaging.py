"""Placeholder: filled in by the inbox work."""

WORKFLOWS: list[type] = []
