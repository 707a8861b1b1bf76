"""The predictor's native hot path (src/streamfit/_native.c), which needs a C compiler and
Python's headers at install time; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("streamfit._native", ["src/streamfit/_native.c"]),
    ]
)
