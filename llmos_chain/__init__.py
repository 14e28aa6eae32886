"""llmos-chain: an auditable marketplace for private LLM fine-tuning."""

__version__ = "0.1.0"
