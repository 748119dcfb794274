"""One token per item (``<i_17>``), alone or appended to a collaborative / semantic prefix.

``item_index`` gives every item its own atomic token, as TIGER-style id-only inputs and
GPTRec do: a history of ten items costs ten source tokens, an id is decoded in one step, and
the token's embedding *is* the item's embedding (so it can be initialised from collaborative
or text vectors, see :mod:`textrec.p5.item_init`). The number in the token name is the item
index and carries no order information for the model (a token is an atomic embedding row, not
digits), so the scheme is not leaky even where item indexes follow first appearance.

``hybrid_index`` appends the per-item token to another scheme's id (``<c0_3><c1_7><i_17>``):
the prefix shares statistical strength between similar items, the last token tells them apart
without the collision rules of the base scheme.
"""

from __future__ import annotations

from textrec.indexing.base import ItemIndex


def item_token(item: int) -> str:
    """The token naming one item."""
    return f"<i_{int(item)}>"


def item_index(n_items: int) -> ItemIndex:
    """Every item named by one token of its own."""
    if n_items < 1:
        raise ValueError(f"an item index needs at least one item, got n_items={n_items}")
    return ItemIndex("item", [[item_token(i)] for i in range(n_items)], leaky=False,
                     report={"tokens_per_item": 1})


def hybrid_index(base: ItemIndex) -> ItemIndex:
    """``base``'s id of each item followed by the item's own token (scheme ``<base>+item``)."""
    if base.leaky:
        raise ValueError(f"refusing a hybrid on the leaky '{base.scheme}' index")
    tokens = [list(t) + [item_token(i)] for i, t in enumerate(base.tokens)]
    return ItemIndex(f"{base.scheme}+item", tokens, leaky=False,
                     report={"base_scheme": base.scheme, "base_report": base.report})
