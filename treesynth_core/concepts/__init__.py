"""SynthLLM's document-grounded generator (arXiv 2503.19551, section 2 of the paper).

Documents (:mod:`.documents`) are read and chunked; each is asked once for its level, subject,
topics and key concepts (:mod:`.extract`, stored in the project by :mod:`.store`; also read and
written as JSONL by :mod:`.model`); the concepts of all documents make one co-occurrence graph
(:mod:`.graph`), on which seeded random walks pick concepts from different topics (:mod:`.walks`);
questions are generated at levels 1-3 (:mod:`.synth`) into a named sample set.

A folder of its own beside ``scaling/`` (SynthLLM's other half), not under ``generate/``: most of
it is reading documents and building and walking a graph, not asking an LLM for samples.
"""
