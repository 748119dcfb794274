"""P5 engine: recommendation as text-to-text with a T5 encoder-decoder.

Data flow (one module per step; importing this package loads nothing heavy)::

    split.train ──TrainData──▶ serializer.P5Serializer ──(source, target, task, template_id)──┐
    item index (textrec.indexing: random | sequential (leaky) | collaborative | semantic)      │
        └──▶ tokenizer.train_tokenizer (BPE on item texts + prompts, item tokens added)       ▼
    model.P5Model (T5 from a preset or checkpoint + whole-word item-span embeddings) ──▶ trainer.train_p5
        ──▶ generation.generate_items (trie-constrained beams, consumed items excluded)
        ──▶ recommender.P5Recommender (core ``Recommender``: ``score``/``recommend``/``evaluate``)

Templates live in ``prompts/p5/<family>.yaml`` (sequential, direct, rating, explanation,
review; ``unseen: true`` ones are held out for zero-shot evaluation). Recipes in
``training/p5_*.yaml``; the command line is ``textrec p5 train|recommend`` (:mod:`textrec.p5.cli`);
the benchmark is ``eval/p5_bench.py``.
"""
