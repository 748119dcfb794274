"""Item identifiers for generative recommenders: random, sequential, collaborative and semantic indexing, and the trie."""
