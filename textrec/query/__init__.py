"""Rec-R1 engine: an LLM writes search queries for a user; GRPO trains it with a retrieval metric as reward."""
