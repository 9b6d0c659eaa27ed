"""REST for the caller, users (admins) and API tokens. Rules live in ``service.py``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from podstack.errors import BadRequest
from podstack.schemas.auth import (
    MeOut,
    ServiceAccountCreate,
    ServiceAccountOut,
    ServiceAccountTokenCreate,
    ServiceAccountUpdate,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from podstack.schemas.common import Page
from podstack.server.auth import service, service_accounts
from podstack.server.auth.models import ApiToken, User
from podstack.server.deps import AdminCtx, ViewerCtx
from podstack.server.pagination import clamp_limit, decode_token, page_of

router = APIRouter(tags=["users and tokens"])

Limit = Annotated[int | None, Query(description="Page size (1-1000, default 100).")]
PageToken = Annotated[str | None, Query(description="next_page_token of the previous page.")]


def _token_out(tok: ApiToken) -> TokenOut:
    return TokenOut.model_validate(tok)


@router.get("/me", response_model=MeOut, summary="Who am I")
def me(ctx: ViewerCtx) -> MeOut:
    p = ctx.principal
    return MeOut(username=p.username, role=p.role, user_id=p.user_id, via=p.via, scope=p.scope)


# ---------------------------------------------------------------- users (admins)


@router.post("/users", status_code=201, response_model=UserOut, summary="Create a user")
def create_user(body: UserCreate, ctx: AdminCtx) -> UserOut:
    with ctx.write() as s:
        user = service.create_user(
            s,
            ctx.actor,
            body.username,
            role=body.role,
            password=body.password,
            email=body.email,
            display_name=body.display_name,
        )
        return UserOut.model_validate(user)


@router.get("/users", response_model=Page[UserOut], summary="List users")
def list_users(ctx: AdminCtx, limit: Limit = None, page_token: PageToken = None) -> Page[UserOut]:
    n = clamp_limit(limit)
    key = decode_token(page_token, 1)
    with ctx.read() as s:
        rows = service.list_users(s, limit=n + 1, after=str(key[0]) if key else None)
        items, token = page_of(rows, n, lambda u: [u.username])
        return Page[UserOut](
            items=[UserOut.model_validate(u) for u in items], next_page_token=token
        )


@router.get("/users/{username}", response_model=UserOut, summary="Get a user")
def get_user(username: str, ctx: AdminCtx) -> UserOut:
    with ctx.read() as s:
        return UserOut.model_validate(service.get_user(s, username))


@router.patch("/users/{username}", response_model=UserOut, summary="Change a user")
def update_user(username: str, body: UserUpdate, ctx: AdminCtx) -> UserOut:
    with ctx.write() as s:
        user: User = service.update_user(
            s, ctx.actor, username, body.model_dump(exclude_unset=True)
        )
        return UserOut.model_validate(user)


# ---------------------------------------------------------------- tokens


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenCreated,
    summary="Create an API token (the value is shown only in this response)",
)
def create_token(body: TokenCreate, ctx: ViewerCtx) -> TokenCreated:
    with ctx.write() as s:
        issued = service.issue_token(
            s,
            ctx.principal,
            body.name,
            username=body.username,
            expires_at=body.expires_at,
            expires_in_days=body.expires_in_days,
        )
        out = _token_out(issued.token)
        return TokenCreated(**out.model_dump(exclude={"status"}), token=issued.value)


@router.get("/tokens", response_model=Page[TokenOut], summary="List API tokens")
def list_tokens(
    ctx: ViewerCtx,
    username: Annotated[str | None, Query(description="Admins: this user's tokens.")] = None,
    all_users: Annotated[
        bool, Query(alias="all", description="Admins: everyone's tokens.")
    ] = False,
    limit: Limit = None,
    page_token: PageToken = None,
) -> Page[TokenOut]:
    n = clamp_limit(limit)
    key = decode_token(page_token, 1)
    if key is not None and not (isinstance(key[0], int) and 0 <= key[0] < 2**31):
        raise BadRequest("Invalid page_token.", {"page_token": page_token})
    with ctx.read() as s:
        rows = service.visible_tokens(
            s,
            ctx.principal,
            username=username,
            all_users=all_users,
            limit=n + 1,
            after_id=key[0] if key else None,
        )
        items, token = page_of(rows, n, lambda t: [t.id])
        return Page[TokenOut](items=[_token_out(t) for t in items], next_page_token=token)


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke an API token")
def revoke_token(token_id: int, ctx: ViewerCtx) -> TokenOut:
    with ctx.write() as s:
        return _token_out(service.revoke_token(s, ctx.principal, token_id))


# ---------------------------------------------------------------- service accounts (admins)


@router.post(
    "/service-accounts",
    status_code=201,
    response_model=ServiceAccountOut,
    summary="Create a service account (a non-human user for automation)",
)
def create_service_account(body: ServiceAccountCreate, ctx: AdminCtx) -> ServiceAccountOut:
    with ctx.write() as s:
        account = service_accounts.create(
            s, ctx.actor, body.name, role=body.role, description=body.description
        )
        return service_accounts.to_out(account)


@router.get(
    "/service-accounts", response_model=Page[ServiceAccountOut], summary="List service accounts"
)
def list_service_accounts(ctx: AdminCtx) -> Page[ServiceAccountOut]:
    # A handful per installation (one per pipeline): one page.
    with ctx.read() as s:
        return Page[ServiceAccountOut](
            items=[service_accounts.to_out(a) for a in service_accounts.list_all(s)],
            next_page_token=None,
        )


@router.get(
    "/service-accounts/{name}", response_model=ServiceAccountOut, summary="Get a service account"
)
def get_service_account(name: str, ctx: AdminCtx) -> ServiceAccountOut:
    with ctx.read() as s:
        return service_accounts.to_out(service_accounts.get(s, name))


@router.patch(
    "/service-accounts/{name}",
    response_model=ServiceAccountOut,
    summary="Change a service account's role, description or disabled state",
)
def update_service_account(
    name: str, body: ServiceAccountUpdate, ctx: AdminCtx
) -> ServiceAccountOut:
    with ctx.write() as s:
        account = service_accounts.update(s, ctx.actor, name, body.model_dump(exclude_unset=True))
        return service_accounts.to_out(account)


@router.post(
    "/service-accounts/{name}/tokens",
    status_code=201,
    response_model=TokenCreated,
    summary="Issue an API token to a service account (the value is shown only here)",
)
def create_service_account_token(
    name: str, body: ServiceAccountTokenCreate, ctx: AdminCtx
) -> TokenCreated:
    with ctx.write() as s:
        issued = service_accounts.issue_token(
            s,
            ctx.principal,
            name,
            body.name,
            expires_at=body.expires_at,
            expires_in_days=body.expires_in_days,
        )
        out = _token_out(issued.token)
        return TokenCreated(**out.model_dump(exclude={"status"}), token=issued.value)
