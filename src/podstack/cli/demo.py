"""``podstack demo``: fills a store with realistic demo data so a newcomer sees a living UI.

Everything goes through ``MLOpsClient`` (embedded on ``PODSTACK_HOME`` by default, or a server
with ``--url``/``--token``), exactly as a user's training scripts would: experiments with
metric curves, datasets and artifacts; several models with versions in every stage, stage
notes, aliases, tags and validation metrics; and a model fine-tuned from another.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from podstack.cli.common import console, open_client
from podstack.client.client import MLOpsClient
from podstack.errors import NotFound

SENTINEL_MODEL = "sentiment-classifier"


@dataclass
class DemoSummary:
    experiments: list[str] = field(default_factory=list)
    runs: int = 0
    models: dict[str, int] = field(default_factory=dict)  # name -> number of versions
    skipped: bool = False


@dataclass(frozen=True)
class RunSpec:
    name: str
    params: dict[str, Any]
    quality: float  # 0..1: how good the final metrics are
    epochs: int = 10
    status: str = "FINISHED"


def _curve(rng: random.Random, start: float, end: float, t: float, noise: float) -> float:
    """A smooth saturating curve from ``start`` to ``end`` at progress ``t`` in [0, 1]."""
    shaped = 1 - math.exp(-4 * t)
    return start + (end - start) * shaped / (1 - math.exp(-4)) + rng.gauss(0, noise)


def _log_curves(
    client: MLOpsClient,
    run_id: str,
    rng: random.Random,
    spec: RunSpec,
    metrics: dict[str, tuple[float, float]],
    steps_per_epoch: int = 5,
) -> dict[str, float]:
    """Logs a whole history per metric in one request; returns the final values."""
    total = spec.epochs * steps_per_epoch
    if spec.status == "FAILED":
        total = max(3, total // 3)  # it crashed a third of the way in
    points = []
    final: dict[str, float] = {}
    for step in range(total + 1):
        t = step / max(1, spec.epochs * steps_per_epoch)
        for key, (start, end) in metrics.items():
            target = start + (end - start) * (0.55 + 0.45 * spec.quality)
            noise = abs(end - start) * 0.015
            value = round(_curve(rng, start, target, t, noise), 5)
            points.append({"key": key, "value": value, "step": step})
            final[key] = value
    client.log_metric_points(run_id, points)
    return final


def _write(root: Path, rel: str, data: bytes | str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _weights(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


def _run(
    client: MLOpsClient,
    experiment: str,
    spec: RunSpec,
    rng: random.Random,
    metrics: dict[str, tuple[float, float]],
    files: dict[str, bytes | str],
    datasets: list[dict[str, str]],
    tags: dict[str, str],
) -> tuple[str, dict[str, float]]:
    run = client.start_run(experiment_id=experiment, run_name=spec.name, tags=tags)
    run.log_params(spec.params)
    for ds in datasets:
        run.log_dataset(**ds)
    final = _log_curves(client, run.id, rng, spec, metrics)
    if spec.status != "FAILED" and files:
        with tempfile.TemporaryDirectory(prefix="podstack-demo-") as tmp:
            root = Path(tmp)
            for rel, data in files.items():
                _write(root, rel, data)
            run.log_artifacts(str(root))
    if spec.status != "RUNNING":
        run.end(spec.status)
    return run.id, final


# ---------------------------------------------------------------- the scenario


def _sentiment(client: MLOpsClient, rng: random.Random, summary: DemoSummary) -> list[str]:
    exp = "sentiment-exp"
    client.create_experiment(
        exp,
        description="BERT-based sentiment analysis fine-tuned on customer reviews.",
        tags={"team": "nlp", "task": "classification"},
    )
    summary.experiments.append(exp)
    datasets = [
        {
            "name": "customer-reviews-v2",
            "source_uri": "s3://ml-datasets/reviews/v2/train.parquet",
            "digest": "9f2c4e1ab7d3",
            "context": "training",
        },
        {
            "name": "customer-reviews-v2-holdout",
            "source_uri": "s3://ml-datasets/reviews/v2/holdout.parquet",
            "digest": "41d0be93c5aa",
            "context": "validation",
        },
    ]
    metrics = {
        "train_loss": (0.69, 0.12),
        "val_loss": (0.70, 0.21),
        "accuracy": (0.52, 0.95),
        "f1": (0.48, 0.93),
    }
    specs = [
        RunSpec(
            "bert-base-lr3e-5",
            {
                "lr": 3e-5,
                "epochs": 4,
                "batch_size": 32,
                "optimizer": "adamw",
                "model": "bert-base-uncased",
            },
            0.55,
            4,
        ),
        RunSpec(
            "bert-base-lr2e-5",
            {
                "lr": 2e-5,
                "epochs": 6,
                "batch_size": 32,
                "optimizer": "adamw",
                "model": "bert-base-uncased",
            },
            0.72,
            6,
        ),
        RunSpec(
            "bert-base-aug",
            {
                "lr": 2e-5,
                "epochs": 8,
                "batch_size": 32,
                "optimizer": "adamw",
                "model": "bert-base-uncased",
                "augmentation": "back-translation",
            },
            0.9,
            8,
        ),
        RunSpec(
            "bert-large-aug",
            {
                "lr": 1e-5,
                "epochs": 8,
                "batch_size": 16,
                "optimizer": "adamw",
                "model": "bert-large-uncased",
                "augmentation": "back-translation",
            },
            0.97,
            8,
        ),
        RunSpec(
            "bert-large-lr5e-5",
            {
                "lr": 5e-5,
                "epochs": 8,
                "batch_size": 16,
                "optimizer": "adamw",
                "model": "bert-large-uncased",
            },
            0.4,
            8,
            "FAILED",
        ),
        RunSpec(
            "distilbert-fast",
            {
                "lr": 5e-5,
                "epochs": 5,
                "batch_size": 64,
                "optimizer": "adamw",
                "model": "distilbert-base-uncased",
            },
            0.8,
            5,
        ),
        RunSpec(
            "bert-large-aug-seed2",
            {
                "lr": 1e-5,
                "epochs": 10,
                "batch_size": 16,
                "optimizer": "adamw",
                "model": "bert-large-uncased",
                "augmentation": "back-translation",
            },
            0.6,
            10,
            "RUNNING",
        ),
    ]
    run_ids = []
    for spec in specs:
        files: dict[str, bytes | str] = {
            "model.pt": _weights(rng, 96_000 if "large" in str(spec.params["model"]) else 48_000),
            "config.json": json.dumps(
                {"architecture": spec.params["model"], "num_labels": 3, "max_length": 256}, indent=2
            ),
            "tokenizer/vocab.txt": "\n".join(
                ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "great", "terrible"]
            ),
            "tokenizer/tokenizer_config.json": json.dumps({"do_lower_case": True}),
            "eval/confusion_matrix.json": json.dumps([[410, 22, 8], [19, 388, 31], [6, 27, 421]]),
        }
        rid, _ = _run(
            client,
            exp,
            spec,
            rng,
            metrics,
            files,
            datasets,
            {"team": "nlp", "git_commit": f"{rng.getrandbits(28):07x}"},
        )
        run_ids.append(rid)
    summary.runs += len(specs)

    name = SENTINEL_MODEL
    client.register_model(
        name=name,
        description="BERT-based sentiment analysis model",
        tags=["nlp", "sentiment", "production-ready"],
    )
    versions = [
        client.create_model_version(
            name, run_ids[0], "model.pt", description="Baseline: bert-base, 4 epochs"
        ),
        client.create_model_version(
            name, run_ids[1], "model.pt", description="Longer training, lower learning rate"
        ),
        client.create_model_version(
            name,
            run_ids[2],
            "",
            description="Improved accuracy with data augmentation "
            "(full package: weights, config, tokenizer)",
        ),
        client.create_model_version(
            name, run_ids[3], "", description="bert-large with back-translation augmentation"
        ),
        client.create_model_version(
            name,
            run_ids[5],
            "model.pt",
            description="DistilBERT: 2x faster inference, slightly lower accuracy",
        ),
    ]
    move = client.transition_model_version_stage
    move(name, 1, "Staging", note="First candidate for the review-triage pilot")
    move(name, 1, "Production", note="Pilot launch")
    move(name, 2, "Staging", note="Validating on holdout set")
    move(name, 2, "Production", note="+4 points accuracy on holdout", archive_existing=True)
    move(name, 3, "Staging", note="Augmentation helps on sarcasm cases")
    move(name, 3, "Production", note="Approved by ml-team after A/B test", archive_existing=True)
    move(name, 4, "Staging", note="Candidate: best offline metrics so far")
    client.set_model_alias(model_name=name, alias="latest-prod", version=3)
    client.set_model_alias(model_name=name, alias="champion", version=3)
    client.set_model_alias(model_name=name, alias="challenger", version=4)
    client.set_model_alias(model_name=name, alias="fastest", version=5)
    client.set_model_version_tag(model_name=name, version=3, key="validated_by", value="ml-team")
    client.set_model_version_tag(
        model_name=name, version=3, key="validation_accuracy", value="0.943"
    )
    client.set_model_version_tag(model_name=name, version=4, key="ab_test", value="running")
    client.log_model_version_metrics(
        name, 3, {"holdout_accuracy": 0.943, "holdout_f1": 0.931, "p95_latency_ms": 41.0}
    )
    client.log_model_version_metrics(
        name, 4, {"holdout_accuracy": 0.951, "holdout_f1": 0.944, "p95_latency_ms": 88.0}
    )
    summary.models[name] = len(versions)

    old = "bert-base-reviews-v1"
    client.register_model(
        name=old,
        description="First review classifier, superseded by sentiment-classifier.",
        tags=["nlp", "deprecated"],
    )
    client.create_model_version(old, run_ids[0], "model.pt", description="Original baseline")
    move(old, 1, "Archived", note="Superseded by sentiment-classifier")
    summary.models[old] = 1
    return run_ids


def _finetune(client: MLOpsClient, rng: random.Random, summary: DemoSummary) -> None:
    exp = "sentiment-de-finetune"
    client.create_experiment(
        exp,
        description="German reviews: fine-tuning the production English model.",
        tags={"team": "nlp"},
    )
    summary.experiments.append(exp)
    metrics = {"train_loss": (0.45, 0.15), "val_loss": (0.48, 0.24), "accuracy": (0.71, 0.91)}
    datasets = [
        {
            "name": "kundenbewertungen-2024",
            "source_uri": "s3://ml-datasets/reviews-de/2024.parquet",
            "digest": "c0ffee42d00d",
            "context": "training",
        }
    ]
    spec = RunSpec(
        "finetune-de-from-v3",
        {
            "lr": 1e-5,
            "epochs": 3,
            "base_model": "models:/sentiment-classifier/3",
            "freeze_layers": 6,
        },
        0.85,
        3,
    )
    rid, _ = _run(
        client,
        exp,
        spec,
        rng,
        metrics,
        {"model.pt": _weights(rng, 48_000), "config.json": json.dumps({"language": "de"})},
        datasets,
        {"team": "nlp"},
    )
    summary.runs += 1
    name = "sentiment-classifier-de"
    client.register_model(
        name=name,
        description="German sentiment model fine-tuned from sentiment-classifier v3.",
        tags=["nlp", "sentiment", "german"],
    )
    client.create_model_version(
        name,
        rid,
        "",
        description="Fine-tuned from sentiment-classifier v3 on German reviews",
        parent="models:/sentiment-classifier/3",
    )
    client.transition_model_version_stage(
        name, 1, "Staging", note="Shadow traffic in the DE storefront"
    )
    client.set_model_alias(model_name=name, alias="candidate", version=1)
    summary.models[name] = 1


def _churn(client: MLOpsClient, rng: random.Random, summary: DemoSummary) -> None:
    exp = "churn-prediction"
    client.create_experiment(
        exp, description="Gradient boosting on subscription events.", tags={"team": "growth"}
    )
    summary.experiments.append(exp)
    metrics = {
        "auc": (0.62, 0.91),
        "logloss": (0.66, 0.31),
        "precision": (0.40, 0.82),
        "recall": (0.35, 0.77),
    }
    datasets = [
        {
            "name": "subscriptions-2024q3",
            "source_uri": "postgresql://warehouse/analytics.subscriptions_q3",
            "digest": "77aa10be93f1",
            "context": "training",
        },
        {
            "name": "subscriptions-2024q4",
            "source_uri": "postgresql://warehouse/analytics.subscriptions_q4",
            "digest": "e4d1c2a9b3f0",
            "context": "evaluation",
        },
    ]
    ids = []
    for i, (depth, trees, lr, q) in enumerate(
        [(4, 200, 0.1, 0.5), (6, 400, 0.05, 0.8), (8, 600, 0.03, 0.92), (10, 800, 0.03, 0.7)]
    ):
        spec = RunSpec(
            f"xgb-depth{depth}",
            {"max_depth": depth, "n_estimators": trees, "learning_rate": lr, "subsample": 0.8},
            q,
            8,
        )
        files = {
            "model.xgb": _weights(rng, 24_000),
            "feature_importance.csv": (
                "feature,importance\ndays_since_login,0.31\nsupport_tickets,0.22\n"
                "plan_downgrades,0.18\nseats,0.09\n"
            ),
        }
        rid, _ = _run(
            client, exp, spec, rng, metrics, files, datasets, {"team": "growth", "fold": str(i)}
        )
        ids.append(rid)
    summary.runs += 4
    name = "customer-churn-predictor"
    client.register_model(
        name=name,
        description="Predicts which accounts will cancel in the next 30 days.",
        tags=["tabular", "churn", "xgboost"],
    )
    for rid, desc in zip(
        ids[:3],
        ["Depth-6 baseline", "Deeper trees, more estimators", "Tuned subsample, q4 features"],
        strict=True,
    ):
        client.create_model_version(name, rid, "", description=desc)
    client.transition_model_version_stage(
        name, 1, "Production", note="Initial release to the CS dashboard"
    )
    client.transition_model_version_stage(name, 2, "Staging", note="Backtest on Q4 looks good")
    client.set_model_alias(model_name=name, alias="latest-prod", version=1)
    summary.models[name] = 3


def _vision(client: MLOpsClient, rng: random.Random, summary: DemoSummary) -> None:
    exp = "image-classification"
    client.create_experiment(
        exp, description="ResNet family on the product-photos dataset.", tags={"team": "vision"}
    )
    summary.experiments.append(exp)
    metrics = {"loss": (2.3, 0.45), "top1_accuracy": (0.12, 0.81), "top5_accuracy": (0.35, 0.96)}
    datasets = [
        {
            "name": "product-photos-v5",
            "source_uri": "s3://ml-datasets/photos/v5/",
            "digest": "5b9e0d7712ac",
            "context": "training",
        }
    ]
    ids = []
    for arch, q in (("resnet50", 0.75), ("resnet101", 0.88), ("efficientnet-b3", 0.3)):
        status = "KILLED" if arch.startswith("efficientnet") else "FINISHED"
        spec = RunSpec(
            f"{arch}-cosine",
            {"arch": arch, "lr": 0.1, "schedule": "cosine", "epochs": 12, "image_size": 224},
            q,
            12,
            status,
        )
        files = {
            "checkpoints/best_model.pt": _weights(rng, 64_000),
            "config.yaml": f"arch: {arch}\nimage_size: 224\nnum_classes: 1000\n",
        }
        rid, _ = _run(client, exp, spec, rng, metrics, files, datasets, {"team": "vision"})
        ids.append(rid)
    summary.runs += 3
    name = "resnet50-imagenet"
    client.register_model(
        name=name, description="Product photo classifier (1000 classes).", tags=["vision", "resnet"]
    )
    client.create_model_version(
        name, ids[0], "checkpoints/best_model.pt", description="ResNet-50, cosine schedule"
    )
    client.create_model_version(
        name, ids[1], "checkpoints/best_model.pt", description="ResNet-101: +3 points top-1"
    )
    client.transition_model_version_stage(name, 1, "Production", note="Launch")
    summary.models[name] = 2
    client.register_model(
        name="fraud-detector",
        description="Real-time card fraud scoring. Training starts next sprint.",
        tags=["tabular", "fraud"],
    )
    summary.models["fraud-detector"] = 0


def fill(client: MLOpsClient, seed: int = 7) -> DemoSummary:
    """Creates the demo data; does nothing if the store already holds it."""
    summary = DemoSummary()
    try:
        client.get_registered_model(SENTINEL_MODEL)
        summary.skipped = True
        return summary
    except NotFound:
        pass
    rng = random.Random(seed)
    _sentiment(client, rng, summary)
    _finetune(client, rng, summary)
    _churn(client, rng, summary)
    _vision(client, rng, summary)
    return summary


def demo(
    home: Path | None = typer.Option(
        None, "--home", help="Store to fill (default: PODSTACK_HOME, ~/.podstack)."
    ),
    url: str | None = typer.Option(
        None,
        "--url",
        help="Fill a running server instead of the local store.",
        envvar="PODSTACK_URL",
    ),
    token: str | None = typer.Option(
        None, "--token", help="API token for --url (editor or admin).", envvar="PODSTACK_API_TOKEN"
    ),
) -> None:
    """Fill a store with realistic demo data: experiments, runs, models in every stage."""
    if home is not None and not url:
        os.environ["PODSTACK_HOME"] = str(home.expanduser())
    os.environ.setdefault("PODSTACK_PROGRESS", "0")
    where = url or os.environ.get("PODSTACK_HOME") or "~/.podstack"
    with console.status(f"Creating demo data in {where}…"), open_client(url, token) as client:
        summary = fill(client)
    if summary.skipped:
        console.print(f"Demo data is already there ({SENTINEL_MODEL} exists); nothing to do.")
        return
    console.print(
        f"Created {len(summary.experiments)} experiments with {summary.runs} runs and "
        f"{len(summary.models)} registered models "
        f"({sum(summary.models.values())} versions) in {where}."
    )
    console.print("Open the UI with `podstack server` and sign in; start at Model Registry.")
