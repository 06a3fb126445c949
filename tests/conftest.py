import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import engine  # noqa: E402,F401  (fast BLAS before anything imports mlx.core)

import gc  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _collect_gui_garbage_on_the_main_thread(request):
    """After a Qt test, collect its cyclic garbage here, on the GUI thread. Left to chance, Python's
    collector runs in whichever thread allocates next: once (1 run in ~6 of the suite) a page's worker
    thread finalised widgets of an earlier test and the process died with a segmentation fault."""
    yield
    if request.node.get_closest_marker("gui") is not None:
        gc.collect()
