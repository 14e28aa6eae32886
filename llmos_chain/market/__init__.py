"""The provider's side of the market: allocation (and, next, the coordinator loop, outbox and executor)."""
