"""P5 engine: recommendation as text-to-text with a T5 encoder-decoder.

Data flow (one module per step; importing this package loads nothing heavy)::

    split.train ──TrainData──▶ serializer.P5Serializer ──(source, target, task, template_id)──┐
    item index (textrec.indexing: item | collaborative | semantic | <base>+item | random |      │
                sequential (leaky))                                                            │
        └──▶ tokenizer.train_tokenizer (BPE on item texts + prompts, item tokens added)       ▼
    model.P5Model (T5 from a preset or checkpoint + whole-word item-span embeddings)
        ──▶ item_init.apply_item_init (item tokens from a training SVD / projected MiniLM text)
        ──▶ trainer.train_p5
        ──▶ generation: first_token_scores (one token per item: full ranking) or generate_items
            (trie-constrained beams, consumed items excluded)
        ──▶ recommender.P5Recommender (core ``Recommender``: ``score``/``recommend``/``evaluate``)

Templates live in ``prompts/p5/<family>.yaml`` (P5's wordings) and ``prompts/p5/compact/``
(short wordings, the user named by their history rather than an id); families: sequential,
direct, rating, explanation, review; ``unseen: true`` ones are held out for zero-shot
evaluation. :mod:`textrec.p5.pipeline` builds a run's parts from a split and a recipe;
:mod:`textrec.p5.throughput` measures what a serialization costs. Recipes in
``training/p5_*.yaml``; the command line is ``textrec p5 train|recommend`` (:mod:`textrec.p5.cli`);
the benchmark is ``eval/p5_bench.py``.
"""
