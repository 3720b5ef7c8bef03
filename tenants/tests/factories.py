import factory

from tenants.models import Role, User


class UserFactory(factory.django.DjangoModelFactory):
    """A user in an existing organisation (pass organisation=...): factories never create
    organisations, since each one is a schema."""

    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@factory.test")
    name = factory.Faker("name")
    role = Role.MEMBER
    is_active = True
    password = factory.django.Password("pw-for-tests-only")
