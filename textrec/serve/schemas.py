"""Request and response bodies of the HTTP API, with every limit the server enforces.

Requests reject unknown fields, so a misspelt option is a 422 naming it instead of being ignored,
and every field is strictly typed: ``k`` must be a JSON integer (``"10"``, ``true`` and ``5.0`` are
422s), a flag a JSON boolean, an id a JSON string.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

#: original user and item ids: letters, digits and ``_ . : -``, 1 to 64 characters
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
MAX_K = 100
MAX_HISTORY = 200
MAX_TITLE = 200
MAX_TEXT = 4000
MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 64

ItemId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
ModelName = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    model: ModelName | None = Field(None, description="which served artifact (default: the first)")


class _UserOrHistory(_Request):
    user: ItemId | None = Field(None, description="a known user's original id")
    history: list[ItemId] | None = Field(None, min_length=1, max_length=MAX_HISTORY,
                                         description="original item ids, oldest first")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.user is None) == (self.history is None):
            raise ValueError("give exactly one of 'user' (a known user id) or 'history' (item ids)")
        return self


class RecommendRequest(_UserOrHistory):
    """A known user or an ad-hoc history; how many items; whether to leave out the history."""

    k: int = Field(10, ge=1, le=MAX_K)
    exclude_history: bool = True


class ItemOut(BaseModel):
    """One item as the API returns it."""

    item_id: str
    title: str
    score: float | None = None
    rank: int | None = None


class RecommendResponse(BaseModel):
    model: str
    user: str | None
    history: list[ItemOut]
    items: list[ItemOut]


class AddItemRequest(_Request):
    """A new item: its text (title + description); the id is generated when not given.

    Adding the same id with the same title and description again answers 200 with the existing
    item (a retried request); the same id with other text is a 409.
    """

    item_id: ItemId | None = None
    title: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE)]
    description: Annotated[str, StringConstraints(max_length=MAX_TEXT)] = ""
    rank_for_user: ItemId | None = Field(None, description="also report the new item's rank for this user")


class AddItemResponse(BaseModel):
    model: str
    item: ItemOut
    n_items: int
    rank_for_user: int | None = None
    persisted: bool
    created: bool = Field(True, description="false when the item already existed with this text (a retry)")


class DeleteItemResponse(BaseModel):
    model: str
    item_id: str
    n_items: int = Field(description="items that can still be recommended")
    persisted: bool


class ExplainRequest(_Request):
    user: ItemId
    item: ItemId


class CitedSentence(BaseModel):
    sentence_id: int
    text: str
    review_user: str
    review_item: str
    score: float


class ExplainResponse(BaseModel):
    model: str
    user: str
    item: ItemOut
    explanation: str
    rating: float
    aspects: list[str]
    cited: list[CitedSentence]


class QueryRequest(_UserOrHistory):
    """A known user or an ad-hoc history; how many items to retrieve; an optional word budget."""

    k: int = Field(10, ge=1, le=MAX_K)
    max_words: int | None = Field(None, ge=1, le=MAX_QUERY_WORDS,
                                  description="at most this many words in the written query")


class QueryResponse(BaseModel):
    model: str
    user: str | None
    query: str
    method: str = Field(description="writer (trained Rec-R1 policy), llm (untrained policy) or "
                                    "raw-history (recent titles concatenated, Rec-R1's baseline)")
    context: list[str]
    items: list[ItemOut]
