"""The model's life: a bundle (LightGBM text, pipeline and contract JSON), the
registry that versions it, and the one way a version becomes the champion."""
