"""TreeSynth Studio's core: the partition tree, LLM access, growth, synthesis, the project store."""

__version__ = "0.1.0"
