"""The environment of every process the server starts on its own host (model servers of the
``local`` deployment target, jobs of the ``local`` schedule executor).

Those processes run code the server did not write: a job is an editor's command, a model
server loads an editor's model (a pickle on a trusted target runs code on load). What they
can read in their environment -- and in ``/proc/<pid>/environ``, readable by anyone with the
same uid -- must not include the server's secrets. So the rule is an allow-list by
construction: every ``PODSTACK_*`` variable is dropped (admin token, database URL, session
and secret keys, SMTP password, OIDC client secret, signing key, and whatever setting is
added next), together with the credentials the server holds for its own storage; the caller
then adds back, explicitly, the few variables the child needs (a job's run-scoped token and
run id; nothing for a model server, which gets its settings on the command line).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

WITHHELD_PREFIX = "PODSTACK_"
# Secrets that are not PODSTACK_* settings but that the server process may hold for itself:
# the artifact bucket's credentials (write access would let a child overwrite blobs behind
# the registry's back) and the PostgreSQL password libpq reads from the environment.
WITHHELD_NAMES = frozenset(
    {
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",  # the legacy name of AWS_SESSION_TOKEN, still read by botocore
        "PGPASSWORD",
    }
)


def withheld(name: str) -> bool:
    """True for a variable the server never hands to a child process."""
    return name.upper().startswith(WITHHELD_PREFIX) or name.upper() in WITHHELD_NAMES


def safe_child_env(
    extra: Mapping[str, str] | None = None, *, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The server's environment (``os.environ`` unless ``environ`` is given) without any
    withheld variable, then ``extra`` on top: what the caller adds back is its explicit
    decision, so ``extra`` may contain ``PODSTACK_*`` names (a job's ``PODSTACK_API_TOKEN``)."""
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if not withheld(k)}
    if extra:
        env.update(extra)
    return env
