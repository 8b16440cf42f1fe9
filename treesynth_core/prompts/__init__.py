"""Prompt templates and reply parsing."""
