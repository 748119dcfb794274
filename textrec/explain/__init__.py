"""ERRA engine: explanations grounded in retrieved review sentences and user aspects."""
