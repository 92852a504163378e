import pytest
import torch


def pytest_collection_modifyitems(config, items):
    # CUDA tests run where a GPU is visible (the device machine) and are skipped, visibly, everywhere else.
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    """Each behaviour test that takes `device` runs on the CPU and, where a GPU is visible, on CUDA (the
    cuda case is skipped, visibly, elsewhere)."""
    return torch.device(request.param)


@pytest.fixture
def gen():
    """A seeded generator: every test sees the same random boxes on every run."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: small convolutions and elementwise ops on tiny images gain nothing
    from a second thread, and on a loaded 2-core machine OpenMP's spinning threads make them several times
    slower. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
