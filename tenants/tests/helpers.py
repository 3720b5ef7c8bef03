from tenants.authentication import refresh_token_for
from tenants.models import User


def bearer_for(user: User) -> str:
    """An access token for `user`, as POST /api/v1/auth/token would issue."""
    return str(refresh_token_for(user).access_token)
