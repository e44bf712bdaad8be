"""Placeholder: filled in by the inbox work."""

from fastapi import APIRouter

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
