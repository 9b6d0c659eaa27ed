"""Webhook and executor signing secrets encrypted at rest

Revision ID: 0010_secrets_at_rest
Revises: 0009_session_generation
Create Date: 2026-12-06

Secrets are now stored as ``enc:v1:<Fernet token>`` (server/secretbox.py), encrypted with a key
kept outside the database (``PODSTACK_SECRET_KEY`` or ``$PODSTACK_HOME/secret_key``). A 200-char
secret takes ~360 characters encrypted, so ``webhooks.secret`` becomes TEXT. Schedule executor
secrets live in the ``executor`` JSON column and need no schema change.

The rows themselves are not encrypted here: a migration has no access to the key (it runs from
``podstack db upgrade`` too, possibly on another host). Values without the prefix are read as
plaintext and encrypted by the server at its next start (``secretbox.seal_at_start``).

Only PostgreSQL enforces VARCHAR lengths; on SQLite the column is left alone (changing its type
means copying the table, which would cascade-delete the webhook's deliveries).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_secrets_at_rest"
down_revision = "0009_session_generation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "webhooks",
            "secret",
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )


def downgrade() -> None:
    # Encrypted values do not fit VARCHAR(200): the column stays TEXT (harmless for 0009's
    # code, which reads any string). Decrypting needs the key, so secrets stay encrypted and an
    # older server cannot use them: set new webhook secrets after a downgrade.
    pass
