"""An AE title is admitted only from its hospital's networks; loopback only when none is set."""

import pytest
from django.core.exceptions import ValidationError

from consent.models import InstitutionAETitle


@pytest.mark.parametrize(
    ("networks", "address", "admitted"),
    [
        ("", "127.0.0.1", True),
        ("", "::1", True),
        ("", "10.1.2.3", False),
        ("10.1.0.0/16", "10.1.2.3", True),
        ("10.1.0.0/16, 192.168.5.7", "192.168.5.7", True),
        ("10.1.0.0/16", "10.2.0.1", False),
        ("10.1.0.0/16", "127.0.0.1", False),
        ("10.1.0.0/16", "not-an-address", False),
    ],
)
def test_it_admits_only_the_configured_peers(networks: str, address: str, admitted: bool) -> None:
    title = InstitutionAETitle(ae_title="CHL_PACS", peer_networks=networks)
    assert title.admits(address) is admitted


@pytest.mark.django_db
def test_it_refuses_a_malformed_network() -> None:
    title = InstitutionAETitle(ae_title="CHL_PACS", peer_networks="10.1.0.0/33")
    with pytest.raises(ValidationError, match="peer_networks"):
        title.full_clean(exclude=["institution"])


@pytest.mark.django_db
def test_create_institution_records_the_pacs_networks() -> None:
    from django.core.management import CommandError, call_command

    call_command(
        "create_institution", "ZIT", "Zithaklinik", "--ae-title", "ZIT_PACS",
        "--peer-networks", "10.9.0.0/16",
    )  # fmt: skip
    assert InstitutionAETitle.objects.get(ae_title="ZIT_PACS").admits("10.9.1.1")
    with pytest.raises(CommandError, match="Not an address"):
        call_command(
            "create_institution", "ZIU", "Other", "--ae-title", "ZIU_PACS",
            "--peer-networks", "10.9.0.0/99",
        )  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("title", ["zit_pacs", "ZIT PACS", "ZITHAKLINIK_PACS_1"])
def test_create_institution_names_the_invalid_ae_title_and_creates_nothing(title: str) -> None:
    from django.core.management import CommandError, call_command

    from consent.models import Institution

    with pytest.raises(CommandError) as refused:
        call_command(
            "create_institution", "ZIT", "Zithaklinik",
            "--ae-title", "ZIT_PACS", "--ae-title", title,
        )  # fmt: skip
    message = str(refused.value)
    assert message.startswith(f"AE title {title!r}: ")
    assert "1 to 16 capital letters, digits, _ or -." in message
    assert not Institution.objects.filter(code="ZIT").exists()
    assert not InstitutionAETitle.objects.filter(ae_title="ZIT_PACS").exists()
