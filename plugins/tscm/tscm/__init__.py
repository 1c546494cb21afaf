"""TSCM plugin for vpr-bench (Shen et al., ICRA 2024, arXiv 2404.01587)."""
