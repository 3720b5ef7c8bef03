# Google's sign-in against a local stand-in of its token endpoint (allauth's real views).
from tenants.tests.conftest import google  # noqa: F401
