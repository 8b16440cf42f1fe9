"""Generation: growing the tree (TreeSynth), leaf synthesis, the flat baseline and Prismatic gap filling."""
