"""The yardstick for bench/webhook_ingestion.py: a FastAPI endpoint that does nothing."""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/bare")
async def bare(request: Request) -> dict[str, bool]:
    await request.body()  # read the body like the webhook does, then do nothing with it
    return {"success": True}
