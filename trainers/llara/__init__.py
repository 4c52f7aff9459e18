"""LLaRA (arXiv 2312.15503): post-train a decoder LLM so a prompt's final state embeds the text."""
