"""The model server behind `llmos serve`: a fine-tuned output, decrypted in memory, behind a FastAPI app.

`engine` runs the model (torch), `batcher` gathers concurrent requests into one forward pass, `metrics`
counts for `/metrics`, `app` is the HTTP API, and `process` is `python -m worker serve` (weights on stdin).
"""
