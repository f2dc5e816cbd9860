"""Which listed objects become batch jobs, and where their results go (pure)."""

from __future__ import annotations

from imagedrop.ledger import Batch, JobKind
from imagedrop.listing import is_candidate, jobs_for_page
from imagedrop.manifests.naming import result_key
from imagedrop.recipes import Recipe
from imagedrop.storage import OUTPUT_MARKER, ObjectInfo


def info(key: str, bucket: str = "b", **meta: str) -> ObjectInfo:
    return ObjectInfo(bucket=bucket, key=key, etag="e", size=10, metadata=dict(meta))


def batch(**kw) -> Batch:
    values = dict(id="B", kind="wxo", bucket="b", prefix="in/", output_bucket="b",
                  output_prefix="out/B/", recipe=Recipe(prompt="p", output_format="png"),
                  callback_url=None, listing_cursor="", listing_done=False, lease_owner=None,
                  lease_expires=None, created_at=0.0, finished_at=None, summary=None, extra={})
    values.update(kw)
    return Batch(**values)


class TestIsCandidate:
    """Images only; never folders, manifests, hidden files or our own outputs."""

    def test_images_taken(self):
        for key in ("in/a.jpg", "in/b.JPEG", "in/c.png", "in/d.webp", "in/sub/e.gif"):
            assert is_candidate(info(key), outputs=[("b", "out/")])

    def test_others_skipped(self):
        for key in ("in/", "in/imagedrop.yaml", "in/notes.txt", "in/.hidden.png", "in/noext"):
            assert not is_candidate(info(key), outputs=[("b", "out/")])

    def test_outputs_skipped_by_prefix_and_marker(self):
        outputs = [("b", "out/"), ("b", "edited/")]
        assert not is_candidate(info("out/a.png"), outputs=outputs)
        assert not is_candidate(info("edited/x/a.png"), outputs=outputs)
        assert is_candidate(info("out/a.png", bucket="other"), outputs=outputs)
        assert not is_candidate(info("in/a.png", **{OUTPUT_MARKER: "1"}), outputs=outputs)


class TestJobsForPage:
    """A page's jobs: deduplicated per batch and key, numbered for fair claiming."""

    def test_jobs(self):
        page = [info("in/a.jpg"), info("in/notes.txt"), info("in/sub/b.png")]
        jobs = jobs_for_page(batch(), page, first_seq=10, max_attempts=3)
        assert [j.source_key for j in jobs] == ["in/a.jpg", "in/sub/b.png"]
        assert [j.seq for j in jobs] == [10, 11]
        assert [j.output_key for j in jobs] == ["out/B/a-jpg.png", "out/B/sub/b.png"]
        assert all(j.kind is JobKind.BATCH and j.batch_id == "B" for j in jobs)
        assert jobs[0].dedupe_key == "batch:B:in/a.jpg" and jobs[0].max_attempts == 3


class TestResultKey:
    def test_extension_follows_format(self):
        assert result_key("out/", "photo.png", "png") == "out/photo.png"
        assert result_key("out/", "photo.JPEG", "jpeg") == "out/photo.jpg"
        assert result_key("x/", "noext", "webp") == "x/noext.webp"

    def test_a_changed_extension_stays_in_the_name(self):
        """a.jpg and a.png in one folder never share a result."""
        assert result_key("out/", "photo.JPG", "png") == "out/photo-jpg.png"
        assert result_key("", "a/b.png", "jpeg") == "a/b-png.jpg"
        assert result_key("o/", "a.jpg", "png") != result_key("o/", "a.png", "png")
