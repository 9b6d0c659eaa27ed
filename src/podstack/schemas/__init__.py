"""Pydantic wire contract shared by the SDK and the server (no ORM here)."""
