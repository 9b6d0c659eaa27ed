"""Autogenerate an Alembic revision against a scratch database (developer tool).

usage: python scripts/gen_migration.py <db-url> <rev-id> "<message>" <down-revision|none>
The database is first upgraded to the current heads, so the new revision holds only the
difference between the ORM models and the schema.
"""

from __future__ import annotations

import sys

from alembic import command

from podstack.server.db.migrate import alembic_config
from podstack.server.db.session import make_engine


def main() -> None:
    url, rev, msg, down = sys.argv[1:5]
    engine = make_engine(url)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        if down != "none":
            command.upgrade(cfg, "heads")
        head = down if down != "none" else "base"
        command.revision(cfg, message=msg, autogenerate=True, rev_id=rev, head=head)


if __name__ == "__main__":
    main()
