"""The Kubernetes Job executor.

No cluster can run here, so: manifests are validated with the official client's pydantic
models (``V1Job.model_validate`` rejects unknown and mistyped fields), and the API calls go
to a MOCK of ``BatchV1Api`` / ``CoreV1Api`` (``create_autospec(..., instance=True)``: only
real client methods, called with arguments their real signatures accept) that answers with
real client model objects. Everything else (the scheduler, database, runs, tokens) is real.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from unittest.mock import MagicMock, create_autospec

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from podstack.server.auth import service as auth_service
from podstack.server.config import Settings
from podstack.server.db.session import Database
from podstack.server.schedules import executions as ex_rules
from podstack.server.schedules.executors import kubernetes as kx
from podstack.server.schedules.scheduler import FakeClock, Scheduler
from tests.server.schedules.conftest import create, executions

MakeScheduler = Callable[..., Scheduler]
WHEN = datetime(2024, 11, 1, 2, tzinfo=UTC)


def _job(**executor: Any) -> ex_rules.JobSpec:
    return ex_rules.JobSpec(
        execution_id="exe-0011223344556677",
        schedule_id="sch-8899aabbccddeeff",
        schedule_name="BERT Nightly_Fine.tune",
        run_id="run-0123456789abcdef",
        experiment_id="exp-1",
        scheduled_time=WHEN,
        trigger="cron",
        params={"lr": "0.001"},
        config={"lr": 0.001},
        executor={"type": "kubernetes", "image": "ghcr.io/acme/train:1.2", **executor},
        timeout_seconds=3600,
        api_url="https://podstack.example.com",
        api_token="pst_secret-token",
        attempt=1,
    )


def test_job_name_is_deterministic_and_a_dns_label() -> None:
    a = kx.job_name("BERT Nightly_Fine.tune" * 5, "sch-1", WHEN)
    assert a == kx.job_name("BERT Nightly_Fine.tune" * 5, "sch-1", WHEN)
    assert a != kx.job_name("BERT Nightly_Fine.tune" * 5, "sch-1", WHEN.replace(hour=3))
    assert len(a) <= 63 and a.startswith("podstack-bert-nightly-fine-tune")
    assert all(c.isalnum() or c == "-" for c in a) and a == a.lower()


def test_manifest_validates_with_gpu_deadline_backoff_and_secret_token(
    settings: Settings,
) -> None:
    job = _job(
        gpu_type="A100",
        gpu_count=2,
        cpu="8",
        memory="32Gi",
        backoff_limit=2,
        command=["python", "train.py"],
        env={"WANDB_MODE": "offline"},
        node_selector={"pool": "training"},
    )
    name = kx.job_name(job.schedule_name, job.schedule_id, job.scheduled_time)
    manifest = kx.job_manifest(job, name, "ml", settings.kubernetes_gpu_types)
    model = kx.validate_job(manifest)
    assert isinstance(model, k8s.V1Job)
    spec = model.spec
    assert spec.active_deadline_seconds == 3600 and spec.backoff_limit == 2
    pod = spec.template.spec
    assert pod.restart_policy == "Never"
    assert pod.node_selector == {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
        "pool": "training",
    }
    (container,) = pod.containers
    assert container.image == "ghcr.io/acme/train:1.2"
    assert container.command == ["python", "train.py"]
    assert container.resources.limits == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}
    env = {e.name: e for e in container.env}
    assert env["PODSTACK_RUN_ID"].value == "run-0123456789abcdef"
    assert env["PODSTACK_URL"].value == "https://podstack.example.com"
    assert env["PODSTACK_PARAM_LR"].value == "0.001"
    assert env["WANDB_MODE"].value == "offline"
    # The token is never in the Job spec, only referenced from its Secret.
    assert env["PODSTACK_API_TOKEN"].value is None
    assert env["PODSTACK_API_TOKEN"].value_from.secret_key_ref.name == f"{name}-token"
    assert "pst_secret-token" not in str(manifest)
    secret = kx.validate_secret(kx.secret_manifest(job, name, "ml"))
    assert secret.string_data == {"PODSTACK_API_TOKEN": "pst_secret-token"}
    assert model.metadata.labels["podstack.io/execution-id"] == job.execution_id


def test_model_validation_rejects_unknown_fields(settings: Settings) -> None:
    manifest = kx.job_manifest(_job(), "podstack-x-1", "ml", settings.kubernetes_gpu_types)
    manifest["spec"]["activeDeadline"] = 5  # a typo Kubernetes would silently drop
    with pytest.raises(ValidationError, match="activeDeadline"):
        kx.validate_job(manifest)


def _mocks() -> tuple[MagicMock, MagicMock]:
    # Autospec, not MagicMock(spec=...): spec checks method names only and would accept
    # create_namespaced_job(body_typo=1); autospec binds each call to the real signature.
    return (
        create_autospec(k8s.BatchV1Api, instance=True),
        create_autospec(k8s.CoreV1Api, instance=True),
    )


def test_mocks_refuse_calls_the_real_client_would_refuse() -> None:
    batch, core = _mocks()
    with pytest.raises(TypeError):
        batch.create_namespaced_job(body_typo=1)
    with pytest.raises(TypeError):
        batch.create_namespaced_job("ns")  # body missing
    with pytest.raises(TypeError):
        core.delete_namespaced_secret("name")  # namespace missing
    with pytest.raises(AttributeError):
        batch.create_job("ns", k8s.V1Job())  # not a BatchV1Api method
    batch.create_namespaced_job("ns", k8s.V1Job())  # the real signature is accepted


def _finished_job(condition: str, reason: str | None = None) -> k8s.V1Job:
    return k8s.V1Job(
        status=k8s.V1JobStatus(
            conditions=[k8s.V1JobCondition(type=condition, status="True", reason=reason)]
        )
    )


def _pods(name: str, exit_code: int) -> k8s.V1PodList:
    return k8s.V1PodList(
        items=[
            k8s.V1Pod(
                metadata=k8s.V1ObjectMeta(name=f"{name}-abcde"),
                status=k8s.V1PodStatus(
                    container_statuses=[
                        k8s.V1ContainerStatus(
                            name="train",
                            image="i",
                            image_id="x",
                            ready=False,
                            restart_count=0,
                            state=k8s.V1ContainerState(
                                terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code)
                            ),
                        )
                    ]
                ),
            )
        ]
    )


@pytest.fixture
def k8s_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"public_url": "https://podstack.example.com"})


def test_scheduler_submits_reconciles_and_stores_pod_log(
    db: Database,
    k8s_settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
) -> None:
    batch, core = _mocks()
    clock = FakeClock(datetime(2024, 11, 1, 1, 59, tzinfo=UTC))
    sid = create(
        db,
        k8s_settings,
        clock.now(),
        name="gpu-train",
        timeout_seconds=7200,
        executor={"type": "kubernetes", "image": "train:1", "gpu_type": "T4", "namespace": "ml"},
    )
    sched = make_scheduler(
        clock,
        public_url="https://podstack.example.com",
        api_url="https://podstack.example.com",
        kubernetes_api=lambda: (batch, core),
    )
    clock.set(datetime(2024, 11, 1, 2, tzinfo=UTC))
    sched.tick()
    (ex,) = executions(db, sid)
    assert ex.status == "running"
    name = kx.job_name("gpu-train", sid, datetime(2024, 11, 1, 2, tzinfo=UTC))
    assert ex.external_id == name
    ns, body = batch.create_namespaced_job.call_args.args
    assert ns == "ml" and isinstance(body, k8s.V1Job) and body.metadata.name == name
    assert body.spec.active_deadline_seconds == 7200
    assert body.spec.template.spec.containers[0].resources.limits == {"nvidia.com/gpu": "1"}
    # The Secret the Job's token comes from: a valid V1Secret in the Job's namespace, named as
    # the Job's env refers to it, holding a live API token of this server (and the Job spec
    # itself never holds the token).
    secret_ns, secret = core.create_namespaced_secret.call_args.args
    assert secret_ns == "ml" and isinstance(secret, k8s.V1Secret)
    wire = secret.model_dump(by_alias=True, exclude_none=True)
    assert kx.validate_secret(wire).model_dump(by_alias=True, exclude_none=True) == wire
    assert (wire["apiVersion"], wire["kind"], wire["type"]) == ("v1", "Secret", "Opaque")
    assert secret.metadata.name == f"{name}-token" and secret.metadata.namespace == "ml"
    assert set(secret.string_data) == {"PODSTACK_API_TOKEN"}
    token = secret.string_data["PODSTACK_API_TOKEN"]
    env = {e.name: e for e in body.spec.template.spec.containers[0].env}
    ref = env["PODSTACK_API_TOKEN"].value_from.secret_key_ref
    assert (ref.name, ref.key) == (secret.metadata.name, "PODSTACK_API_TOKEN")
    assert token not in str(body.to_dict())
    with db.session(readonly=True) as s:
        assert auth_service.resolve_token(s, token).principal is not None

    batch.read_namespaced_job_status.return_value = k8s.V1Job(status=k8s.V1JobStatus(active=1))
    sched.tick()
    assert executions(db, sid)[0].status == "running"

    batch.read_namespaced_job_status.return_value = _finished_job("Complete")
    core.list_namespaced_pod.return_value = _pods(name, 0)
    core.read_namespaced_pod_log.return_value = "epoch 1\nepoch 2\ndone\n"
    sched.tick()
    (ex,) = executions(db, sid)
    assert (ex.status, ex.exit_code, ex.log_artifact) == ("succeeded", 0, "logs/execution.log")
    assert "done" in (ex.log_tail or "")
    core.list_namespaced_pod.assert_called_with("ml", label_selector=f"job-name={name}")
    core.delete_namespaced_secret.assert_called_with(f"{name}-token", "ml")


@pytest.mark.parametrize(
    ("reason", "status"), [("DeadlineExceeded", "timed_out"), ("BackoffLimitExceeded", "failed")]
)
def test_failed_jobs_map_to_failed_or_timed_out(
    db: Database,
    k8s_settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
    reason: str,
    status: str,
) -> None:
    batch, core = _mocks()
    clock = FakeClock(datetime(2024, 11, 1, 1, 59, tzinfo=UTC))
    sid = create(
        db, k8s_settings, clock.now(), name="k", executor={"type": "kubernetes", "image": "train:1"}
    )
    sched = make_scheduler(clock, kubernetes_api=lambda: (batch, core))
    clock.set(datetime(2024, 11, 1, 2, tzinfo=UTC))
    sched.tick()
    batch.read_namespaced_job_status.return_value = _finished_job("Failed", reason)
    core.list_namespaced_pod.return_value = _pods("k", 137)
    core.read_namespaced_pod_log.return_value = "oom"
    sched.tick()
    (ex,) = executions(db, sid)
    assert (ex.status, ex.exit_code) == (status, 137)


def test_resubmission_of_existing_job_is_idempotent_and_cancel_deletes_it(
    db: Database,
    k8s_settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
) -> None:
    batch, core = _mocks()
    batch.create_namespaced_job.side_effect = ApiException(status=409, reason="AlreadyExists")
    core.create_namespaced_secret.side_effect = ApiException(status=409, reason="AlreadyExists")
    clock = FakeClock(datetime(2024, 11, 1, 1, 59, tzinfo=UTC))
    sid = create(
        db, k8s_settings, clock.now(), name="k", executor={"type": "kubernetes", "image": "train:1"}
    )
    sched = make_scheduler(clock, kubernetes_api=lambda: (batch, core))
    clock.set(datetime(2024, 11, 1, 2, tzinfo=UTC))
    sched.tick()
    (ex,) = executions(db, sid)
    assert ex.status == "running"  # the Job from an earlier attempt is adopted
    core.replace_namespaced_secret.assert_called_once()  # with the fresh token
    with db.session() as s:
        ex_rules.request_cancel(s, "admin", ex.id, clock.now())
    sched.tick()
    (ex,) = executions(db, sid)
    assert ex.status == "cancelled"
    batch.delete_namespaced_job.assert_called_once_with(
        ex.external_id, "default", propagation_policy="Background"
    )


def test_api_server_error_is_retried_then_fails(
    db: Database,
    k8s_settings: Settings,
    experiment: str,
    make_scheduler: MakeScheduler,
) -> None:
    batch, core = _mocks()
    batch.create_namespaced_job.side_effect = ApiException(status=503, reason="Unavailable")
    clock = FakeClock(datetime(2024, 11, 1, 1, 59, tzinfo=UTC))
    sid = create(
        db, k8s_settings, clock.now(), name="k", executor={"type": "kubernetes", "image": "train:1"}
    )
    sched = make_scheduler(
        clock, kubernetes_api=lambda: (batch, core), scheduler_max_start_attempts=2
    )
    clock.set(datetime(2024, 11, 1, 2, tzinfo=UTC))
    sched.tick()
    assert executions(db, sid)[0].status == "queued"
    clock.advance(minutes=5)
    sched.tick()
    (ex,) = executions(db, sid)
    assert ex.status == "failed" and "after 2 attempts" in (ex.message or "")
    assert batch.create_namespaced_job.call_count == 2
