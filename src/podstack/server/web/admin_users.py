"""Admin page: users (create, change role, disable/enable, set password) and, separately,
service accounts (create, issue a token; role and disable/enable share the users' routes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response

from podstack.errors import PodstackError, ValidationFailed
from podstack.schemas.auth import UserOut
from podstack.server.auth import groups as directory_groups
from podstack.server.auth import service as auth_service
from podstack.server.auth import service_accounts
from podstack.server.auth.principal import ROLES
from podstack.server.web.core import (
    AdminAction,
    AdminPage,
    WebCtx,
    WebRoute,
    form_errors,
    toast_header,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)
PAGE_SIZE = 200


def _users(ctx: WebCtx, after: str | None) -> tuple[list[UserOut], str | None]:
    with ctx.read() as s:
        rows = auth_service.list_users(s, limit=PAGE_SIZE + 1, after=after)
        users = [UserOut.model_validate(u) for u in rows[:PAGE_SIZE]]
    return users, users[-1].username if len(rows) > PAGE_SIZE else None


def _users_page(
    ctx: WebCtx,
    after: str | None,
    *,
    created_token: dict[str, str] | None = None,
    sa_errors: dict[str, str] | None = None,
    sa_form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    users, next_after = _users(ctx, after)
    with ctx.read() as s:
        accounts = [UserOut.model_validate(a) for a in service_accounts.list_all(s)]
        # Directory groups (single sign-on) shown beside each person.
        groups = directory_groups.groups_of_users(s, [u.id for u in users])
    return ctx.render(
        "auth/users.html",
        status_code=status,
        # A token value may be on the page: never let a cache keep it.
        headers={"Cache-Control": "no-store"} if created_token else None,
        section="users",
        # People here; service accounts in their own table below.
        users=[u for u in users if u.kind != "service"],
        service_accounts=accounts,
        user_groups=groups,
        roles=ROLES,
        next_after=next_after,
        after=after,
        errors={},
        form={"role": "viewer"},
        created_token=created_token,
        sa_errors=sa_errors or {},
        sa_form=sa_form or {"role": "viewer"},
    )


@router.get("/admin/users")
def users_page(ctx: AdminPage, after: str | None = None) -> Response:
    return _users_page(ctx, after)


@router.post("/admin/service-accounts")
def create_service_account(
    ctx: AdminAction,
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "viewer",
    description: Annotated[str, Form()] = "",
) -> Response:
    form = {"name": name, "role": role, "description": description}
    try:
        with ctx.write() as s:
            service_accounts.create(s, ctx.actor, name.strip(), role, description)
    except PodstackError as exc:
        errors = form_errors(exc, "name" if exc.status == 409 else "_form")
        if "username" in errors:  # the account rules name the field as for users
            errors["name"] = errors.pop("username")
        # The form sits in a closed dialog after the reload: say it on the page too.
        errors.setdefault("_form", exc.message)
        return _users_page(
            ctx,
            None,
            sa_errors=errors,
            sa_form=form,
            status=422 if exc.status in (400, 422) else exc.status,
        )
    return ctx.redirect(
        "/admin/users",
        f"Service account {name.strip()} created. Issue it a token for your pipeline.",
    )


@router.post("/admin/service-accounts/{name}/tokens")
def issue_service_account_token(
    ctx: AdminAction,
    name: str,
    token_name: Annotated[str, Form()] = "",
    expires_in_days: Annotated[str, Form()] = "90",
) -> Response:
    days = None if expires_in_days == "never" else expires_in_days
    try:
        if days is not None and (not days.isdigit() or not 1 <= int(days) <= 3650):
            raise ValidationFailed(
                "Choose an expiry of 1-3650 days, or never.", {"field": "expires_in_days"}
            )
        with ctx.write() as s:
            issued = service_accounts.issue_token(
                s,
                ctx.principal,
                name,
                token_name.strip() or "ci",
                expires_in_days=int(days) if days is not None else None,
            )
            created = {"account": name, "name": issued.token.name, "value": issued.value}
    except PodstackError as exc:
        ctx.flash(exc.message, "error")
        return _users_page(ctx, None, status=exc.status)
    return _users_page(ctx, None, created_token=created)


@router.post("/admin/users")
def create_user(
    ctx: AdminAction,
    username: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "viewer",
    password: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
) -> Response:
    form = {"username": username, "role": role, "email": email, "display_name": display_name}
    try:
        with ctx.write() as s:
            auth_service.create_user(
                s,
                ctx.actor,
                username.strip(),
                role=role,
                password=password or None,
                email=email,
                display_name=display_name,
            )
    except PodstackError as exc:
        return ctx.render(
            "auth/_user_form.html",
            status_code=422 if exc.status in (400, 422) else exc.status,
            errors=form_errors(exc, "username" if exc.status == 409 else "_form"),
            form=form,
            roles=ROLES,
        )
    return ctx.redirect("/admin/users", f"User {username.strip()} created.")


def _row(ctx: WebCtx, username: str, status: int = 200, message: str = "", level: str = "success"):  # type: ignore[no-untyped-def]
    with ctx.read() as s:
        user = UserOut.model_validate(auth_service.get_user(s, username))
    return ctx.render(
        "auth/_user_row.html",
        status_code=status,
        headers=toast_header(message, level) if message else None,
        u=user,
        roles=ROLES,
    )


@router.post("/admin/users/{username}/role")
def change_role(ctx: AdminAction, username: str, role: Annotated[str, Form()] = "") -> Response:
    try:
        with ctx.write() as s:
            auth_service.set_role(s, ctx.actor, username, role)
    except PodstackError as exc:
        # Re-render the row as it really is (the select snapped back) and say why.
        return _row(ctx, username, 409 if exc.status == 409 else 422, exc.message, "error")
    return _row(ctx, username, message=f"{username} is now {role.lower()}.")


@router.post("/admin/users/{username}/disable")
def disable_user(ctx: AdminAction, username: str) -> Response:
    with ctx.write() as s:
        auth_service.set_disabled(s, ctx.actor, username, True)
    return ctx.redirect("/admin/users", f"{username} is disabled and can no longer sign in.")


@router.post("/admin/users/{username}/enable")
def enable_user(ctx: AdminAction, username: str) -> Response:
    with ctx.write() as s:
        auth_service.set_disabled(s, ctx.actor, username, False)
    return ctx.redirect("/admin/users", f"{username} is enabled again.")


@router.post("/admin/users/{username}/password")
def set_password(
    ctx: AdminAction, username: str, password: Annotated[str, Form()] = ""
) -> Response:
    try:
        with ctx.write() as s:
            auth_service.set_password(s, ctx.actor, username, password)
    except PodstackError as exc:
        return ctx.render(
            "auth/_password_form.html",
            status_code=422,
            u={"username": username},
            errors={"password": exc.message},
        )
    return ctx.redirect("/admin/users", f"Password for {username} updated.")
