from tests.serving.conftest import requests_data, settings, store  # noqa: F401
