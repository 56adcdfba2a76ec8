"""Pictures of the data: the sprite (``fmnist data sprite``) and 2-D maps (``fmnist viz embed``)."""
