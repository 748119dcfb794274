"""P5 engine: recommendation as text-to-text with a T5 encoder-decoder."""
