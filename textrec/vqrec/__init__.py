"""The VQ-Rec engine: item text -> sentence embedding -> OPQ/PQ codes -> code-embedding sequential model.

``model`` holds :class:`VQRec` (fit, pretrain on several domains, transfer, add new items from
text); ``cli`` the ``textrec vqrec`` commands.
"""
