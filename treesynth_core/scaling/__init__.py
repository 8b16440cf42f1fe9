"""SynthLLM's rectified scaling law: fitting, extrapolation, and its plot."""
