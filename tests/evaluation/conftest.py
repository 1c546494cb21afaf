import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread: on a busy 2-core machine a second thread's barrier can stall a tiny forward
    by a scheduler time slice, which would swamp the sleeps the timing tests compare."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
