"""SynthLLM's rectified scaling law: the measured points (``points``), the laws and their fit (``law``),
held-out scoring, plateau and extrapolation (``report``), and its plot (``plot``)."""
