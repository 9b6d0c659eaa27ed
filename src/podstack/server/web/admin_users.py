"""Admin page: users (create, change role, disable/enable, set password)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response

from podstack.errors import PodstackError
from podstack.schemas.auth import UserOut
from podstack.server.auth import service as auth_service
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


@router.get("/admin/users")
def users_page(ctx: AdminPage, after: str | None = None) -> Response:
    users, next_after = _users(ctx, after)
    return ctx.render(
        "auth/users.html",
        section="users",
        users=users,
        roles=ROLES,
        next_after=next_after,
        after=after,
        errors={},
        form={"role": "viewer"},
    )


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
