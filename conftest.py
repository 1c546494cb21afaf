"""For every test path (tests/ and the plugins'): the default image cache is a folder of the session's
own, never the user's ~/.cache, from before the first module- or session-scoped fixture runs; each test
then gets a folder of its own (``vpr_bench.testing.isolated_cwd``)."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def session_image_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VPR_BENCH_IMAGE_CACHE", str(tmp_path_factory.mktemp("image-cache-session")))
        yield
