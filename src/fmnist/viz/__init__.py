"""Pictures of the data: the sprite, and (later) embeddings."""
