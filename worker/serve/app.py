"""The HTTP API of a served model: one task endpoint answers, the others say which one to use.

Every bad request is a 4xx with a message: pydantic checks the body (empty text, unknown fields, out-of-range
settings), the tokenizer the length (more tokens than the model has positions), and the model's task the endpoint.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmos_chain.recipe import Task
from worker.serve.batcher import Batcher
from worker.serve.engine import Engine, Generation, InputTooLong
from worker.serve.metrics import Metrics

#: Longest text accepted before tokenizing (characters); the model's positions bound it further.
MAX_CHARS = 8192

ENDPOINTS = {Task.SEQUENCE_CLASSIFICATION: "/v1/classify", Task.TOKEN_CLASSIFICATION: "/v1/tag", Task.CAUSAL_LM: "/v1/generate"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


class ClassifyRequest(_Body):
    text: str = Field(min_length=1, max_length=MAX_CHARS, description="The text to classify.")
    top_k: int = Field(default=1, ge=1, le=100, description="How many labels to return, best first.")
    check_text = field_validator("text")(_not_blank)


class Scored(BaseModel):
    label: str
    score: float


class ClassifyResponse(BaseModel):
    label: str = Field(description="The most likely label.")
    score: float = Field(description="Its probability.")
    labels: list[Scored] = Field(description="The top_k labels with their probabilities, best first.")


class TagRequest(_Body):
    text: str = Field(min_length=1, max_length=MAX_CHARS, description="Whitespace-separated words, as the model was trained on.")
    check_text = field_validator("text")(_not_blank)


class Entity(BaseModel):
    label: str
    text: str
    start: int = Field(description="Character offset where the entity starts in the request's text.")
    end: int = Field(description="Character offset just past its end.")
    score: float = Field(description="Mean probability of its words' tags.")


class TagResponse(BaseModel):
    entities: list[Entity]


class GenerateRequest(_Body):
    prompt: str = Field(min_length=1, max_length=MAX_CHARS)
    max_new_tokens: int = Field(default=32, ge=1, le=512)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0, description="0: greedy; above: sampling.")
    seed: int | None = Field(default=None, ge=0, lt=2**32, description="Sampling seed (reproducible answers).")
    stream: bool = Field(default=False, description="Server-sent events: one `token` event per piece, then `done`.")
    check_prompt = field_validator("prompt")(_not_blank)


class GenerateResponse(BaseModel):
    text: str


class Health(BaseModel):
    status: str
    task: str
    endpoint: str
    job: int | None
    labels: list[str] | None
    max_positions: int


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "This model does not do that task (the message names the endpoint that it does)."},
    422: {"description": "A bad request: empty text, too long for the model, a field out of range or unknown."},
}


class _Count:
    """Counts `/v1/` requests by status and times them to their response's headers (a plain ASGI middleware: cheaper
    than Starlette's `BaseHTTPMiddleware` on every request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.request(path, int(message["status"]), time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed)


def build_app(engine: Engine, job: int | None = None, max_batch: int = 32, max_wait_s: float = 0.005,
              concurrency: int = 1) -> FastAPI:
    """`concurrency`: how many batches run at once (see `Batcher`)."""
    metrics = Metrics()
    classify_batcher: Batcher[Any, Any] = Batcher(engine.classify, max_batch, max_wait_s, metrics.batch, concurrency)
    tag_batcher: Batcher[Any, Any] = Batcher(engine.tag, max_batch, max_wait_s, metrics.batch, concurrency)
    generate_batcher: Batcher[Generation, str] = Batcher(engine.generate, max_batch, max_wait_s, metrics.batch, concurrency)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await classify_batcher.start()
        await tag_batcher.start()
        await generate_batcher.start()
        yield
        await classify_batcher.stop()
        await tag_batcher.stop()
        await generate_batcher.stop()

    app = FastAPI(title="llmos served model", version="1",
                  description=f"A fine-tuned {engine.task.value} model" + (f" (job {job})" if job is not None else "")
                  + f", decrypted in memory. This model answers at {ENDPOINTS[engine.task]}.", lifespan=lifespan)
    app.state.engine = engine
    app.state.metrics = metrics

    app.add_middleware(_Count, metrics=metrics)

    def require(task: Task) -> None:
        if engine.task is not task:
            raise HTTPException(400, f"this model is a {engine.task.value} model, not {task.value}: use POST {ENDPOINTS[engine.task]}")

    def too_long(exc: InputTooLong) -> HTTPException:
        return HTTPException(422, str(exc))

    @app.post("/v1/classify", response_model=ClassifyResponse, responses=ERRORS, summary="Sequence classification")
    async def classify(body: ClassifyRequest) -> ClassifyResponse:
        """Labels for the text, with their probabilities."""
        require(Task.SEQUENCE_CLASSIFICATION)
        try:
            ids = engine.classify_ids(body.text)
        except InputTooLong as exc:
            raise too_long(exc) from None
        ranked = await classify_batcher.submit((ids, body.top_k))
        return ClassifyResponse(label=ranked[0]["label"], score=ranked[0]["score"], labels=[Scored(**r) for r in ranked])

    @app.post("/v1/tag", response_model=TagResponse, responses=ERRORS, summary="Token classification")
    async def tag(body: TagRequest) -> TagResponse:
        """Entities in the text: runs of words with the same tag (other than O), with character spans."""
        require(Task.TOKEN_CLASSIFICATION)
        try:
            ids, words = engine.tag_ids(body.text)
        except InputTooLong as exc:
            raise too_long(exc) from None
        entities = await tag_batcher.submit((body.text, ids, words))
        return TagResponse(entities=[Entity(**e) for e in entities])

    @app.post("/v1/generate", response_model=GenerateResponse, responses={
        **ERRORS, 200: {"description": "The generated text; with `stream`, server-sent events instead.",
                        "content": {"text/event-stream": {}}}}, summary="Text generation")
    async def generate(body: GenerateRequest) -> Any:
        """Continue the prompt. Concurrent requests are batched like the others: one forward pass per new token for the
        whole batch (a batch runs until its longest generation ends)."""
        require(Task.CAUSAL_LM)
        try:
            ids = engine.prompt_ids(body.prompt)
        except InputTooLong as exc:
            raise too_long(exc) from None
        if not body.stream:
            text = await generate_batcher.submit(Generation(ids, body.max_new_tokens, body.temperature, body.seed))
            return GenerateResponse(text=text)
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        running = asyncio.ensure_future(generate_batcher.submit(Generation(
            ids, body.max_new_tokens, body.temperature, body.seed, lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece))))
        running.add_done_callback(lambda _: pieces.put_nowait(None))  # the end, also if the batch failed

        async def events() -> AsyncIterator[str]:
            text = ""
            while (piece := await pieces.get()) is not None:
                text += piece
                yield f"event: token\ndata: {json.dumps({'text': piece})}\n\n"
            if running.done() and not running.cancelled() and running.exception() is not None:
                yield f"event: error\ndata: {json.dumps({'message': 'generation failed'})}\n\n"
                return
            yield f"event: done\ndata: {json.dumps({'text': text})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok", task=engine.task.value, endpoint=ENDPOINTS[engine.task], job=job, labels=engine.labels,
                      max_positions=engine.max_positions)

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> str:
        return metrics.render(engine.forward_passes)

    return app
