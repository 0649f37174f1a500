"""Typed Hub ids (``REPAINT_ALLOW_HUB_IDS=1``, repaint/space/hub_ids.py) against the loopback Hub (tests/_hub.py),
through the real loading code: sizes read before a download, anonymous resolution, the downloads' folder bounded
(least recently used deleted first), the models in memory bounded the same way, a failed load keeping nothing and
never falling back to another visitor's model. Repositories are google/ddpm-* layouts with tiny weights
(tests/_hub_repos.py)."""

from __future__ import annotations

import os

import pytest
from _hub_repos import ddpm_repo

from repaint import space
from repaint.space import ServeError
from repaint.space.hub_ids import HUB_IDS_DIR, folder_bytes
from repaint.space.limits import Limits

WEIGHTS = "diffusion_pytorch_model.bin"


def repo_bytes(files: dict) -> int:
    """What a load downloads of a google/ddpm-* layout: its config, scheduler config and weights."""
    return sum(len(files[f]) for f in ("config.json", "scheduler_config.json", WEIGHTS))


def cache_of(tmp_path, monkeypatch, **limits) -> space.ModelCache:
    """A model cache that takes typed ids, with ``limits``, its downloads in a Hub cache of this test's own."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return space.ModelCache(space.Timing(), allow_hub_ids=True, offered=["bundled"], limits=Limits(**limits))


def downloaded(tmp_path) -> set[str]:
    """The repositories in the typed ids' download folder."""
    return {
        d.name.removeprefix("models--").replace("--", "/") for d in (tmp_path / "hub" / HUB_IDS_DIR).glob("models--*")
    }


def weights_sent(hub) -> int:
    return sum(path == WEIGHTS for _, path in hub.sent())


def test_a_model_over_the_size_limit_is_refused_before_its_weights_are_downloaded(hub, tmp_path, monkeypatch):
    files = ddpm_repo("someone/big")
    hub.repos["someone/big"] = files
    cache = cache_of(tmp_path, monkeypatch, hub_bytes_max=repo_bytes(files) - 1)
    with pytest.raises(ServeError, match=r"'someone/big' is too large: its diffusion_pytorch_model\.bin is .* MB"):
        cache.get_model("someone/big")
    assert weights_sent(hub) == 0 and any(r.startswith("HEAD ") and r.endswith(WEIGHTS) for r in hub.requests)
    assert downloaded(tmp_path) == set(), "a refused model keeps nothing"

    cache = cache_of(tmp_path, monkeypatch, hub_bytes_max=repo_bytes(files))  # exactly its size fits
    assert cache.get_model("someone/big").name == "someone/big" and weights_sent(hub) == 1


def test_a_typed_id_is_resolved_without_the_spaces_token(hub, tmp_path, monkeypatch):
    from repaint import loading

    hub.repos["owner/secret"] = ddpm_repo("owner/secret")
    hub.private.add("owner/secret")
    monkeypatch.setenv("HF_TOKEN", "hf_owner_of_the_space")
    cache = cache_of(tmp_path, monkeypatch)
    with pytest.raises(ServeError, match=r"'owner/secret' is not a repository on the Hub"):
        cache.get_model("owner/secret")
    assert hub.auth == set() and hub.requests, "no request of the typed id carried a token"

    # the same repository, loaded by the owner's code (the registry's path), is read with the token: the stand-in
    # Hub serves it to a token, so the refusal above was the anonymous resolution
    assert loading.load_hub("owner/secret", device="cpu", cache_dir=tmp_path / "owner").name == "owner/secret"
    assert hub.auth == {"Bearer hf_owner_of_the_space"}


def test_the_downloads_folder_keeps_the_most_recently_used_within_its_bound(hub, tmp_path, monkeypatch):
    names = ["someone/a", "someone/b", "someone/c"]
    for name in names:
        hub.repos[name] = ddpm_repo(name)
    size = repo_bytes(hub.repos["someone/a"])
    cache = cache_of(tmp_path, monkeypatch, hub_bytes_max=size, hub_cache_bytes_max=int(2.5 * size), hub_models_max=2)
    cache.get_model("someone/a")
    cache.get_model("someone/b")
    past = os.stat(tmp_path / "hub" / HUB_IDS_DIR).st_mtime - 60  # a and b used a minute ago, b last
    for i, name in enumerate(names[:2]):
        os.utime(cache.hub_ids.folder(name), (past + i, past + i))
    cache.get_model("someone/a")  # from memory: a is now the most recently used, on disk too
    cache.get_model("someone/c")  # over both bounds: b goes

    assert downloaded(tmp_path) == {"someone/a", "someone/c"}
    assert [n for n in cache.models if n != "bundled"] == ["someone/a", "someone/c"]
    assert folder_bytes(tmp_path / "hub" / HUB_IDS_DIR) <= int(2.5 * size)
    assert weights_sent(hub) == 3, "a served from memory, never downloaded twice"


def test_a_failed_load_keeps_nothing_and_names_the_id(hub, tmp_path, monkeypatch):
    files = ddpm_repo("someone/huge-images")
    files["config.json"] = files["config.json"].replace(b'"sample_size": 16', b'"sample_size": 1024')
    hub.repos["someone/huge-images"] = files
    cache = cache_of(tmp_path, monkeypatch, hub_resolution_max=512)
    with pytest.raises(ServeError, match=r"Could not load model 'someone/huge-images'.*1024x1024; at most 512x512"):
        cache.get_model("someone/huge-images")
    assert downloaded(tmp_path) == set() and "someone/huge-images" not in cache.models


def test_a_failed_load_goes_back_to_an_offered_model_never_to_another_visitors(hub, tmp_path, monkeypatch):
    hub.repos["visitor/one"] = ddpm_repo("visitor/one")
    cache = cache_of(tmp_path, monkeypatch)
    warned = []
    with pytest.raises(ServeError, match="'visitor/missing' is not a repository"):  # nothing offered loaded yet
        cache.usable_model("visitor/missing", warned.append)
    cache.get_model("bundled")
    assert cache.usable_model("visitor/one", warned.append) == "visitor/one"  # another visitor's, loaded last
    assert cache.usable_model("visitor/missing", warned.append) == "bundled"
    assert warned == [
        "Could not load model 'visitor/missing': model 'visitor/missing' is not a repository on the Hub (or it is "
        "private: log in with HF_TOKEN). Other models still work. Back to bundled."
    ]


def test_a_page_run_with_a_typed_id_gives_its_results(hub, tmp_path, monkeypatch):
    """The page's Inpaint button, as the browser sends it (repaint.space.wire), with a typed id: the run's status
    names the model and its files are named after it (owner--name: a file name has no '/')."""
    from conftest import served

    import app
    from repaint.models import BUNDLED_DIR
    from repaint.space.wire import Page

    hub.repos["someone/faces"] = ddpm_repo("someone/faces", weights_from=BUNDLED_DIR)
    monkeypatch.setattr(app.SERVICE.cache, "allow_hub_ids", True)  # before the page is built: the chooser takes ids
    cache_of(tmp_path, monkeypatch)  # the Hub cache of this test's own
    try:
        with served() as url:
            done = Page(url).inpaint("someone/faces", steps=10, jump=5, resample=1)[-1]
    finally:
        app.SERVICE.cache.models.pop("someone/faces", None)
        app.SERVICE.timing.forget("someone/faces")
    assert done["success"], done
    texts = [v for v in done["output"]["data"] if isinstance(v, str)]
    assert any("model calls, someone/faces, seed 0)" in t for t in texts), texts
    files = [f["image"]["orig_name"] if "image" in f else f.get("orig_name") for f in done["output"]["data"][2]]
    assert files == ["repaint_someone--faces_n1_seed0.png"], files
