import pytest

from webhooks.tests.receiver import Receiver


@pytest.fixture
def receiver():
    """A local webhook receiver (answers 200 until told otherwise: `receiver.answer(...)`)."""
    with Receiver() as server:
        yield server
