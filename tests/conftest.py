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


# Property tests (tests/test_properties.py): "ci" (the default) runs a fixed, derandomized number of examples
# per op; `pytest --hypothesis-profile=long` searches many more with fresh random seeds.
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, print_blob=True)
    _hypothesis_settings.register_profile("long", max_examples=2000, deadline=None, print_blob=True)
    _hypothesis_settings.load_profile("ci")
except ImportError:  # hypothesis is a test dependency; without it only the property tests cannot run
    pass
