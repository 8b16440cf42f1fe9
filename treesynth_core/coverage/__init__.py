"""Coverage: diversity scores (Vendi, G-Vendi), feature extraction, UMAP maps and the coverage report."""

#: The scores a coverage report gives each sample set, as (label shown to people, report key).
SCORES: tuple[tuple[str, str], ...] = (
    ("Vendi", "vendi"),
    ("G-Vendi", "g_vendi"),
    ("mean cosine", "mean_cosine"),
    ("distinct-1", "distinct_1"),
    ("distinct-2", "distinct_2"),
)
