"""``textrec serve``: an HTTP API and a web page over saved artifacts.

Modules: ``backends`` (what one served artifact can do: recommend, add items from text, explain,
write queries; the only module that knows how artifacts are laid out on disk), ``vector_index``
(FAISS top-k for large catalogs), ``schemas`` (request/response models with their limits),
``app`` (the FastAPI application), ``cli`` (``textrec serve``), ``static/`` (the page at ``/``).

Nothing heavy is imported here, so ``textrec --help`` stays fast.
"""
