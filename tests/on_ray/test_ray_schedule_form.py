"""The schedule form of the UI with the ``ray`` executor, against the real Ray cluster: a Ray
schedule is created from the form (address, entrypoint, pip, resources), its page describes the
job and fills the edit form with what was saved, an edit round-trips, and a bad value is shown
on the form and creates nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from podstack import MLOpsClient
from podstack.server.db.session import Database
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.ray_cluster import RayCluster

pytestmark = [pytest.mark.one_db, pytest.mark.timeout(300)]

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def web(live_server: LiveServer, db: Database) -> Iterator[httpx.Client]:
    c = httpx.Client(base_url=live_server.url, follow_redirects=False, timeout=60)
    token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
    assert c.post("/login", data={"password": ADMIN_TOKEN, "csrf_token": token}).status_code == 303
    yield c
    c.close()


@pytest.fixture
def sdk(live_server: LiveServer, db: Database) -> Iterator[MLOpsClient]:
    c = MLOpsClient(api_token=ADMIN_TOKEN, url=live_server.url)
    yield c
    c.close()


def _form(web: httpx.Client, cluster: RayCluster, **over: str) -> dict[str, str]:
    token = CSRF.search(web.get("/schedules").text).group(1)  # type: ignore[union-attr]
    return {
        "name": "ray-nightly",
        "experiment": "ray-form-exp",
        "cron": "0 2 * * *",
        "timezone": "UTC",
        "config": "lr=0.1",
        "executor_type": "ray",
        "ray_address": cluster.address,
        "ray_entrypoint": "python\ntrain.py\n--epochs\n3",
        "ray_working_dir": "s3://code/train.zip",
        "ray_pip": "scikit-learn==1.5.*\npandas",
        "ray_num_cpus": "0.5",
        "ray_num_gpus": "",
        "ray_gpu_type": "",
        "csrf_token": token,
        **over,
    }


def test_ray_schedule_is_created_shown_and_edited_from_the_form(
    web: httpx.Client, sdk: MLOpsClient, ray_cluster: RayCluster, ray_env: None
) -> None:
    sdk.create_experiment("ray-form-exp")
    r = web.post("/schedules", data=_form(web, ray_cluster))
    assert r.status_code == 303, r.text
    ex = sdk.get_schedule("ray-nightly").executor
    assert ex.type == "ray" and ex.address == ray_cluster.address
    assert ex.entrypoint == ["python", "train.py", "--epochs", "3"]
    assert ex.runtime_env.working_dir == "s3://code/train.zip"
    assert ex.runtime_env.pip == ["scikit-learn==1.5.*", "pandas"]
    assert ex.num_cpus == 0.5 and ex.num_gpus is None

    page = web.get(r.headers["location"])
    assert page.status_code == 200
    assert "Ray job" in page.text and "python train.py --epochs 3" in page.text
    # The edit form holds what was saved, Ray selected.
    assert re.search(r'<option value="ray" selected>', page.text)
    assert 'value="0.5"' in page.text and "scikit-learn==1.5.*\npandas" in page.text

    edit = _form(web, ray_cluster, ray_entrypoint="python\ntrain.py", ray_num_cpus="2")
    r = web.post("/schedules/ray-nightly/edit", data=edit)
    assert r.status_code == 303, r.text
    ex = sdk.get_schedule("ray-nightly").executor
    assert ex.entrypoint == ["python", "train.py"] and ex.num_cpus == 2


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"ray_num_cpus": "two"}, "CPUs must be a number"),
        ({"ray_num_cpus": "-1"}, "num_cpus"),
        ({"ray_entrypoint": ""}, "entrypoint"),
        ({"ray_working_dir": "/home/me/code"}, "working_dir"),
        ({"ray_address": "ray://127.0.0.1:10001"}, "http"),
    ],
)
def test_bad_ray_form_values_are_shown_and_create_nothing(
    web: httpx.Client,
    sdk: MLOpsClient,
    ray_cluster: RayCluster,
    ray_env: None,
    over: dict[str, str],
    words: str,
) -> None:
    sdk.create_experiment("ray-form-exp")
    r = web.post("/schedules", data=_form(web, ray_cluster, **over))
    assert r.status_code == 422, r.text
    assert words in r.text
    assert sdk.list_schedules() == []
