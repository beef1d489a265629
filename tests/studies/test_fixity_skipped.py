"""Work that reads stored copies on its own (the bulk data backfill, series previews, a series'
or study's thumbnail) never reads one that failed its fixity check: it skips it, or takes
another good image in its place."""

import io
import logging

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from consent.actors import Actor
from consent.models import Role
from studies import fixity, storage
from studies.models import Instance, Series
from studies.tasks import series_preview

from . import test_backfill_bulkdata, test_thumbnails
from .test_fixity_served import corrupt

# The thumbnail tests' fixtures: Xavier's study of four series, Dr Alice who may open it.
study, alice = test_thumbnails.study, test_thumbnails.alice
stored = test_backfill_bulkdata.stored


@pytest.fixture
def keys_read(monkeypatch) -> list[str]:
    """The keys of the stored objects opened from here on."""
    opened: list[str] = []
    real_open = storage.object_open

    def recording_open(*, key: str):
        opened.append(key)
        return real_open(key=key)

    monkeypatch.setattr(storage, "object_open", recording_open)
    return opened


def _instance(result) -> Instance:
    return Instance.objects.get(sop_instance_uid=result.sop_instance_uid)


# --- the bulk data backfill ----------------------------------------------------------------


def test_the_backfill_leaves_a_failed_copy_unread_and_says_why(stored, keys_read):
    ct = stored["ct"]
    failed = corrupt(ct)
    before = Instance.objects.get(pk=ct.pk)
    keys_read.clear()
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("backfill_bulkdata", stdout=out)
    assert failed.storage_key not in keys_read
    assert "failed its fixity check" in out.getvalue()
    after = Instance.objects.get(pk=ct.pk)
    assert (after.metadata, after.metadata_version) == (before.metadata, before.metadata_version)
    # The others were brought up to date.
    assert Instance.objects.exclude(pk=ct.pk).filter(metadata_version=1).count() == 0


# --- series previews -----------------------------------------------------------------------


def test_a_preview_whose_image_failed_is_made_from_another_good_image(study, keys_read):
    failed = corrupt(study["ct2"])
    keys_read.clear()
    key = series_preview(failed.pk)
    assert key.endswith(".png")
    assert failed.storage_key not in keys_read
    assert Series.objects.get(pk=failed.series_id).preview_key == key


def test_no_preview_when_every_image_of_the_series_failed(study, keys_read):
    failed = corrupt(study["j2k"])  # the only image of its series
    keys_read.clear()
    assert series_preview(failed.pk) == ""
    assert failed.storage_key not in keys_read
    series = Series.objects.get(pk=failed.series_id)
    assert series.preview_key == ""
    assert series.preview_given_up_at is not None


# --- thumbnails ----------------------------------------------------------------------------


def _thumbnail(alice, path: str) -> bytes:
    response = alice.get(f"{path}/thumbnail", HTTP_ACCEPT="image/png")
    assert response.status_code == 200, response.content
    return response.content


def test_a_series_thumbnail_whose_middle_image_failed_shows_another_good_one(alice, study):
    series = test_thumbnails._series(study["ct2"])
    corrupt(study["ct2"])
    shown = _thumbnail(alice, series)
    others = {_thumbnail(alice, test_thumbnails._instance(study[n])) for n in ("ct1", "ct3")}
    assert shown in others
    # Nothing was refused: the failed copy was passed over, never read.
    assert not AuditEvent.objects.filter(action="study.fixity_failed").exists()


def test_a_study_thumbnail_passes_over_a_series_whose_images_all_failed(alice, study):
    for name in ("ct1", "ct2", "ct3"):
        Instance.objects.filter(pk=_instance(study[name]).pk).update(fixity_ok=False)
    shown = _thumbnail(alice, test_thumbnails._study(study["ct2"]))
    assert shown == _thumbnail(alice, test_thumbnails._instance(study["j2k"]))


# --- the refusal's log line ----------------------------------------------------------------


def test_a_refusal_naming_no_instance_is_audited_not_an_index_error(study, cast, caplog):
    actor = Actor(role=Role.PRACTITIONER, practitioner=cast.alice, username="alice")
    caplog.set_level(logging.ERROR, logger="studies.fixity")
    instance = _instance(study["ct2"])
    fixity.refusal_audited(actor, study=instance.study, sop_uids=[], audit_action="study.retrieve")
    assert "0 instance(s)" in caplog.text
    (event,) = AuditEvent.objects.filter(action="study.fixity_failed")
    assert event.detail["instances"] == 0
