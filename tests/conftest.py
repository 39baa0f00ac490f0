import pytest
import torch
from postgres import postgres_server, postgres_url  # noqa: F401  (the service's PostgreSQL fixtures)


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests run on 2 shared cores: one intra-op thread keeps them predictable and avoids oversubscription.
    torch.set_num_threads(1)
