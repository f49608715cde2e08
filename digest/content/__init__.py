"""Stage 1, content: posts from their sources, the post cache, and selection with reasons."""
