"""Validators reject bad input before anything is created (against FakeNova)."""

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from rally.common import validation

from rally_lm.clients.nova import make_client
from rally_lm.task.validators import LiveMigrationHostsValidator
from tests.fakes.fake_nova import FakeClock, FakeNova


class FakeCredential:
    """What Rally's validation context offers: credential.clients().nova(version)."""

    def __init__(self, url):
        self.url = url

    def clients(self):
        return self

    def nova(self, version):
        sess = ks_session.Session(auth=token_endpoint.Token(self.url, "fake-token"))
        return make_client(sess)


@pytest.fixture
def nova():
    fake = FakeNova(FakeClock(), hosts=("hv1", "hv2", "hv3", "hv4")).start()
    fake.hosts["hv3"].update(status="disabled", disabled_reason="maintenance")
    fake.hosts["hv4"].update(state="down")
    yield fake
    fake.stop()


def check(nova, args, admin=True):
    context = {"admin": {"credential": FakeCredential(nova.url)}} if admin else {}
    LiveMigrationHostsValidator().validate(context, {"args": args}, None, None)


def test_good_hosts_pass(nova):
    check(nova, {"source_host": "hv1", "target_host": "hv2"})


@pytest.mark.parametrize("args, message", [
    ({"source_host": "hv1"}, "set both 'source_host' and 'target_host'"),
    ({"source_host": "hv1", "target_host": "hv1"}, "two different compute hosts"),
    ({"source_host": "hv1", "target_host": "hv9"}, "'hv9' is unknown to Nova; known hosts"),
    ({"source_host": "hv3", "target_host": "hv2"}, "'hv3' is disabled (maintenance)"),
    ({"source_host": "hv1", "target_host": "hv4"}, "'hv4' is down"),
])
def test_bad_hosts_are_rejected_with_what_to_fix(nova, args, message):
    with pytest.raises(validation.ValidationError) as error:
        check(nova, args)
    assert message in str(error.value)


def test_missing_admin_credentials(nova):
    with pytest.raises(validation.ValidationError, match="admin credentials"):
        check(nova, {"source_host": "hv1", "target_host": "hv2"}, admin=False)


def test_old_nova_is_rejected(nova):
    nova.max_version = "2.60"
    with pytest.raises(validation.ValidationError, match="2.60 at most; rally_lm needs >= 2.80"):
        check(nova, {"source_host": "hv1", "target_host": "hv2"})


def test_unreachable_nova_is_reported():
    context = {"admin": {"credential": FakeCredential("http://127.0.0.1:9/v2.1")}}
    with pytest.raises(validation.ValidationError, match="cannot ask Nova"):
        LiveMigrationHostsValidator().validate(
            context, {"args": {"source_host": "hv1", "target_host": "hv2"}}, None, None)
