"""Evaluation engine: descriptors → faiss search → Recall@N and cost figures."""
