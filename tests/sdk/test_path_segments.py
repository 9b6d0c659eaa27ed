"""Caller-supplied ids and names travel as one URL path segment each (``client/base.seg``):
``.``/``..`` and ``/`` cannot make a call address another resource."""

from __future__ import annotations

import pytest

from podstack.client.base import seg
from podstack.client.client import MLOpsClient
from podstack.errors import NotFound, PodstackError


def test_seg_encodes_separators_and_dot_segments() -> None:
    assert seg("..") == "%2E%2E"
    assert seg(".") == "%2E"
    assert seg("a/b") == "a%2Fb"
    assert seg("../x") == "..%2Fx"
    assert seg("a?b#c%d") == "a%3Fb%23c%25d"
    # Ordinary values are unchanged; dots inside a name are not segments.
    assert seg("sentiment-classifier.v2") == "sentiment-classifier.v2"
    assert seg(3) == "3"


def test_run_id_cannot_traverse_to_another_resource(client: MLOpsClient) -> None:
    exp = client.create_experiment("traversal-target")
    # Unencoded, "../experiments/<id>" would have been resolved by the URL library into
    # DELETE /experiments/<id>.
    with pytest.raises(NotFound):
        client.delete_run(f"../experiments/{exp.id}")
    for bad in ("..", "."):
        with pytest.raises(NotFound):
            client.delete_run(bad)
        with pytest.raises(NotFound):
            client.get_run(bad)
    assert client.get_experiment(exp.id).id == exp.id


def test_dot_segment_names_reach_the_server_as_given(client: MLOpsClient) -> None:
    client.register_model("seg-model")
    # The server sees ".." as the alias (and refuses it) instead of the request being
    # rewritten to some other route; the model is untouched.
    with pytest.raises(PodstackError) as exc:
        client.delete_model_alias("seg-model", "..")
    assert exc.value.status in (404, 422)
    with pytest.raises(NotFound):
        client.get_registered_model("..")
    assert client.get_registered_model("seg-model").name == "seg-model"
