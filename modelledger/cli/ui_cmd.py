"""``modelledger login-url``: a one-time dashboard sign-in link (valid 10 minutes)."""

from __future__ import annotations

import click

from config.settings import SettingsError, load_settings


def register(cli: click.Group) -> None:
    cli.add_command(login_url)


def sign_in_link(subject: str, *, admin: bool = False) -> str:
    """A one-time link for ``subject`` at the configured issuer (as a token from
    ``modelledger token --sub`` names the same user)."""
    from api.tokens import SCOPE_ADMIN, SCOPE_MODELS, resolve_secret  # noqa: PLC0415
    from api.ui.links import issue_link_token, link_key, login_url  # noqa: PLC0415

    try:
        settings = load_settings()
        secret = resolve_secret(settings)
    except (SettingsError, RuntimeError) as error:
        raise click.ClickException(str(error)) from None
    scopes = [SCOPE_MODELS, SCOPE_ADMIN] if admin else [SCOPE_MODELS]
    token = issue_link_token(link_key(secret), subject, scopes, issuer=settings.jwt_issuer)
    return login_url(settings.base_url, token)


@click.command("login-url", help="Print a one-time dashboard sign-in link, valid 10 minutes.")
@click.option("--sub", "subject", required=True, help="The user (the subject of their tokens).")
@click.option("--admin", is_flag=True, help="Also the operations page (scope admin).")
def login_url(*, subject: str, admin: bool) -> None:
    click.echo(sign_in_link(subject, admin=admin))
