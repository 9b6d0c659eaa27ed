import sys
from alembic import command
from podstack.server.db.session import make_engine
from podstack.server.db.migrate import alembic_config
url, rev, msg, down = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
eng = make_engine(url)
cfg = alembic_config(eng)
with eng.begin() as conn:
    cfg.attributes["connection"] = conn
    if down != "none":
        command.upgrade(cfg, "heads")
    command.revision(cfg, message=msg, autogenerate=True, rev_id=rev, head=(down if down!="none" else "base"))
