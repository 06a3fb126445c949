"""What a run leaves behind: export with a self-check (`export`), the model card, Hub upload."""
