"""Manifest schema, parsing, naming and helpers (pure), and `imagedrop manifest check`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imagedrop.config import ProviderSettings
from imagedrop.errors import InputError
from imagedrop.manifests import (
    DEFAULT_INCLUDE,
    EVENT_TYPES,
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestError,
    ManifestProblem,
    parse_manifest,
)
from imagedrop.manifests.naming import template_problems
from imagedrop.providers import EditSpec

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "manifests"
VALID = sorted(p for p in SAMPLES.iterdir()
               if p.suffix in (".yaml", ".json") and not p.name.startswith("broken-"))
BROKEN = sorted(SAMPLES.glob("broken-*.yaml"))
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def parse(text: str, fmt: str = "yaml") -> Manifest:
    return parse_manifest(text, fmt=fmt, source="bucket/photos/imagedrop.yaml")  # type: ignore[arg-type]


def problems(text: str | bytes, fmt: str = "yaml") -> dict[str, str]:
    """field → reason (the last one when a field has several)."""
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, fmt=fmt, source="m.yaml")  # type: ignore[arg-type]
    assert all(p.file == "m.yaml" for p in caught.value.problems)
    return {p.field: p.reason for p in caught.value.problems}


def sample(name: str) -> Manifest:
    path = SAMPLES / name
    return parse_manifest(path.read_bytes(), fmt="json" if path.suffix == ".json" else "yaml",
                          source=name)


class TestSamples:
    """The example manifests parse, and the broken ones do not."""

    @pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
    def test_valid_samples_parse(self, path: Path) -> None:
        manifest = sample(path.name)
        assert manifest.prompt.strip()
        assert len(VALID) >= 5

    @pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
    def test_broken_samples_fail(self, path: Path) -> None:
        with pytest.raises(ManifestError) as caught:
            sample(path.name)
        assert caught.value.problems and all(p.file == path.name for p in caught.value.problems)

    def test_full_example_keeps_every_field(self) -> None:
        m = sample("food-photos.yaml")
        assert (m.model, m.quality, m.size, m.output_format, m.provider) == (
            "gpt-image-2", "high", "1024x1024", "png", "openai")
        assert (m.output.prefix, m.output.bucket, m.output.name) == (
            "photos/food/edited/", None, "{folder}{stem}.{ext}")
        assert m.exclude == ["*-draft.*", "raw/*"] and m.min_bytes == 1024
        assert (m.fallback, m.settle_seconds, m.recursive) == ("local", 5.0, True)
        hook, cms = m.subscribers
        assert hook.secret_env == "IMAGEDROP_HOOK_SECRET_MAIN" and cms.secret_env is None
        assert cms.events == ["batch.completed"]

    def test_minimal_example_gets_defaults(self) -> None:
        m = sample("minimal.yaml")
        assert m.prompt == "Make this food photo look appetizing"
        assert m.model is None and m.output_format is None and m.provider is None
        assert m.output.prefix is None and m.output.bucket is None
        assert m.include == list(DEFAULT_INCLUDE) and m.exclude == []
        assert (m.fallback, m.settle_seconds, m.subscribers) == ("local", 5.0, [])

    def test_json_and_yaml_say_the_same(self) -> None:
        text = "prompt: hi\noutput: {prefix: out/}\nsubscribers: [{url: 'https://h.example/x'}]"
        as_json = json.dumps({"prompt": "hi", "output": {"prefix": "out/"},
                              "subscribers": [{"url": "https://h.example/x"}]})
        assert parse(text) == parse(as_json, "json")


class TestProblems:
    """Every fault is reported with file, field and reason, all at once."""

    def test_all_problems_at_once(self) -> None:
        found = problems((SAMPLES / "broken-many.yaml").read_text())
        assert set(found) >= {
            "prompt", "size", "output_format", "fallback", "settle_seconds", "min_bytes",
            "output.prefix", "output.bucket", "output.name", "subscribers[0].url",
            "subscribers[0].events[0]", "subscribers[0].secret", "colour"}
        assert "not an integer" in found["prompt"] and "valid string" in found["prompt"]
        assert "'png', 'jpeg' or 'webp'" in found["output_format"]
        assert "{basename}" in found["output.name"] and "unknown placeholder" in found[
            "output.name"]
        assert "http" in found["subscribers[0].url"]
        assert "hunter2" not in str(found)

    def test_error_text_is_one_line_per_problem(self) -> None:
        with pytest.raises(ManifestError) as caught:
            parse_manifest("prompt: 1\nsize: x\n", fmt="yaml", source="b/imagedrop.yaml")
        err = caught.value
        assert isinstance(err, InputError)
        assert str(err).splitlines() == [str(p) for p in err.problems]
        assert err.problems[0] == ManifestProblem("b/imagedrop.yaml", "prompt",
                                                  err.problems[0].reason)
        assert str(err).startswith("b/imagedrop.yaml: prompt: ")

    def test_unknown_fields_suggest_the_right_name(self) -> None:
        found = problems((SAMPLES / "broken-typos.yaml").read_text())
        assert found["promt"] == "unknown field; did you mean prompt?"
        assert found["output.prefx"] == "unknown field; did you mean prefix?"
        assert found["ouput_format"] == "unknown field; did you mean output_format?"
        assert found["prompt"] == "required"

    @pytest.mark.parametrize(("text", "field", "words"), [
        ("prompt: x\nrecursive: 'yes'", "recursive", "boolean, not a string"),
        ("prompt: x\nsettle_seconds: '5'", "settle_seconds", "number, not a string"),
        ("prompt: x\nmax_bytes: 0", "max_bytes", "greater than 0"),
        ("prompt: x\nmin_bytes: -1", "min_bytes", "greater than or equal to 0"),
        ("prompt: '   '", "prompt", "blank"),
        ("prompt: x\nsize: 1024*1024", "size", "WIDTHxHEIGHT"),
        ("prompt: x\nmodel: two words", "model", "single word"),
        ("prompt: x\nprovider: azure", "provider", "'openai' or 'local'"),
        ("prompt: x\ninclude: '*.jpg'", "include", "valid list, not a string"),
        ("prompt: x\ninclude: ['']", "include", "non-empty"),
        ("prompt: x\noutput: edited/", "output", "not a string"),
        ("prompt: x\noutput: {prefix: a/../b/}", "output.prefix", "'..'"),
        ("prompt: x\noutput: {name: '{stem'}", "output.name", "not a valid template"),
        ("prompt: x\noutput: {name: '{stem!r}.png'}", "output.name", "no format"),
        ("prompt: x\noutput: {name: 'same.png'}", "output.name", "overwrites the same object"),
        ("prompt: x\noutput: {name: '/{stem}'}", "output.name", "must not start with '/'"),
        ("prompt: x\noutput: {prefix: ''}", "output.prefix", "over the inputs"),
        ("prompt: x\nsubscribers: [{url: 'https://h.example', events: []}]",
         "subscribers[0].events", "at least 1"),
        ("prompt: x\nsubscribers: [{url: 'https://u:p@h.example/'}]", "subscribers[0].url",
         "user:password"),
        ("prompt: x\nsubscribers: [{url: 'http://h.example:99999/'}]", "subscribers[0].url",
         "valid URL"),
        ("prompt: x\nsubscribers: [{events: [image.completed]}]", "subscribers[0].url",
         "required"),
    ])
    def test_field_problem(self, text: str, field: str, words: str) -> None:
        found = problems(text)
        assert field in found, found
        assert words in found[field]

    @pytest.mark.parametrize(("text", "reason"), [
        ("", "empty"),
        ("  \n# only a comment\n", "empty"),
        ("---\n...\n", "empty"),
        ("- a\n- b\n", "mapping"),
        ("just a string", "mapping"),
    ])
    def test_whole_file_problems(self, text: str, reason: str) -> None:
        found = problems(text)
        assert list(found) == ["(file)"] and reason in found["(file)"]

    def test_yaml_syntax_error_names_line_and_column(self) -> None:
        found = problems((SAMPLES / "broken-syntax.yaml").read_text())
        assert list(found) == ["line 4, column 4"]
        assert found["line 4, column 4"].startswith("YAML syntax:")

    def test_json_syntax_error_names_line_and_column(self) -> None:
        found = problems('{"prompt": "x",\n  "model": }', "json")
        assert list(found) == ["line 2, column 12"]

    def test_duplicate_keys_are_refused(self) -> None:
        assert "duplicate key \"prompt\"" in problems("prompt: a\nprompt: b\n")[
            "line 2, column 1"]
        assert "duplicate" in problems('{"prompt": "a", "prompt": "b"}', "json")["prompt"]

    def test_yaml_aliases_are_refused(self) -> None:
        text = "a: &x [1, 2]\nb: *x\nprompt: p\n"
        assert "aliases" in problems(text)["line 2, column 4"]

    def test_size_limit(self) -> None:
        text = "prompt: x\n#" + "x" * MAX_MANIFEST_BYTES
        assert "at most 65536" in problems(text)["(file)"]
        assert "at most" in problems(text.encode())["(file)"]

    def test_not_utf8(self) -> None:
        assert problems(b"prompt: \xff\xfe")["(file)"] == "not UTF-8 text"

    def test_utf8_bom_is_fine(self) -> None:
        assert parse_manifest("\ufeffprompt: hé".encode(), fmt="yaml", source="s").prompt == "hé"


class TestSecrets:
    """Secrets never live in manifests, and a refused one is never echoed."""

    def test_two_references_during_a_rotation(self) -> None:
        m = parse_manifest(b"prompt: p\nsubscribers:\n  - url: https://h.example/x\n"
                           b"    secret: [env:NEW_SECRET, env:OLD_SECRET]\n",
                           fmt="yaml", source="s")
        assert m.subscribers[0].secret_env == "NEW_SECRET,OLD_SECRET"
        with pytest.raises(ManifestError, match="one or two"):
            parse_manifest(b"prompt: p\nsubscribers:\n  - url: https://h.example/x\n"
                           b"    secret: [env:A, env:B, env:C]\n", fmt="yaml", source="s")

    def test_literal_secret_refused_and_not_echoed(self) -> None:
        with pytest.raises(ManifestError) as caught:
            sample("broken-literal-secret.yaml")
        err = caught.value
        (problem,) = err.problems
        assert problem.field == "subscribers[0].secret"
        assert "env:NAME" in problem.reason and "never live in manifests" in problem.reason
        assert SECRET not in str(err)
        # No chained ValidationError either: its text would quote the secret in tracebacks.
        assert err.__cause__ is None and err.__suppress_context__

    @pytest.mark.parametrize("value", ["env:-X", "env:1ABC", "ENV:HOOK", "env:HOOK SECRET",
                                       "$IMAGEDROP_HOOK_SECRET_MAIN", "hunter2"])
    def test_anything_but_env_name_is_refused(self, value: str) -> None:
        text = f"prompt: x\nsubscribers: [{{url: 'https://h.example', secret: '{value}'}}]"
        reason = problems(text)["subscribers[0].secret"]
        assert "env:NAME" in reason and value not in reason

    def test_env_reference_accepted(self) -> None:
        m = parse("prompt: x\nsubscribers: [{url: 'https://h.example', secret: env:HOOK_2}]")
        assert m.subscribers[0].secret == "env:HOOK_2"
        assert m.subscribers[0].secret_env == "HOOK_2"

    def test_secret_anywhere_else_is_refused(self) -> None:
        text = f"prompt: x\nsubscribers: [{{url: 'https://h.example/?k={SECRET}'}}]"
        with pytest.raises(ManifestError) as caught:
            parse_manifest(text, fmt="yaml", source="m.yaml")
        assert caught.value.problems[0].field == "subscribers[0].url"
        assert "never live in manifests" in str(caught.value) and SECRET not in str(caught.value)


class TestMatches:
    """Which files a manifest takes, and why it skips the others."""

    def test_default_patterns_any_case(self) -> None:
        m = parse("prompt: x")
        assert m.matches("burger.jpg", 10) == (True, None)
        assert m.matches("sub/BURGER.JPEG", None) == (True, None)
        taken, why = m.matches("menu.pdf", 10)
        assert not taken and "include" in (why or "")

    @pytest.mark.parametrize(("name", "words"), [
        ("imagedrop.yaml", "manifest"), ("sub/imagedrop.json", "manifest"),
        (".hidden.jpg", "hidden"), ("sub/", "folder"),
    ])
    def test_never_takes(self, name: str, words: str) -> None:
        taken, why = parse("prompt: x\ninclude: ['*']").matches(name, 1)
        assert not taken and words in (why or "")

    def test_exclude_and_path_patterns(self) -> None:
        m = sample("food-photos.yaml")  # exclude: ["*-draft.*", "raw/*"]
        assert m.matches("pasta-draft.jpg", 5000)[1] == "matches exclude pattern *-draft.*"
        assert m.matches("raw/pasta.jpg", 5000)[1] == "matches exclude pattern raw/*"
        assert m.matches("x/raw/pasta.jpg", 5000) == (True, None)  # path patterns are anchored
        hero = sample("seasonal-campaign.yaml")  # include: [..., "hero/*.webp"]
        assert hero.matches("hero/snow.webp", 1)[0] and not hero.matches("snow.webp", 1)[0]

    def test_size_limits(self) -> None:
        m = parse("prompt: x\nmin_bytes: 10\nmax_bytes: 100")
        assert m.matches("a.png", 9) == (False, "9 bytes is under min_bytes (10)")
        assert m.matches("a.png", 101) == (False, "101 bytes is over max_bytes (100)")
        assert m.matches("a.png", 10) == m.matches("a.png", 100) == (True, None)

    def test_not_recursive(self) -> None:
        m = sample("background-cleanup.json")
        assert m.matches("a.jpg", 1) == (True, None)
        assert "recursive" in (m.matches("sub/a.jpg", 1)[1] or "")


class TestOutputLocation:
    """Where results go, and which locations are refused."""

    def test_default_prefix_is_under_the_manifest_folder(self) -> None:
        m = parse("prompt: x")
        assert m.output_location("photos/food/", "photos/food/sub/burger.jpeg", "b", "e",
                                 "jpeg") == ("b", "photos/food/edited/sub/burger.jpg")
        assert m.output_prefixes("b", "photos/food/") == [("b", "photos/food/edited/")]
        assert m.output_location("", "a.png", "b", "e", "webp") == ("b", "edited/a-png.webp")
        assert m.output_location("", "a.webp", "b", "e", "webp") == ("b", "edited/a.webp")

    def test_explicit_prefix_is_from_the_bucket_root_and_other_bucket(self) -> None:
        m = sample("product-catalogue.yaml")  # shop-cdn-images, products/, {stem}-{etag8}
        assert m.output_location("catalogue/", "catalogue/shoes/red.jpg", "in", '"0123456789ab"',
                                 "webp") == ("shop-cdn-images", "products/shoes/red-01234567.webp")
        assert m.output_prefixes("in", "catalogue/") == [("shop-cdn-images", "products/")]

    def test_date_comes_from_the_caller(self) -> None:
        m = sample("background-cleanup.json")  # uploads/cleaned/{date}/{stem}.{ext}
        when = 1767225600.0  # 2026-01-01T00:00:00Z
        assert m.output_location("uploads/", "uploads/a.png", "b", "e", "jpeg",
                                 when=when) == ("b", "uploads/cleaned/2026-01-01/a.jpg")
        with pytest.raises(ValueError, match="when"):
            m.output_location("uploads/", "uploads/a.png", "b", "e", "jpeg")

    def test_key_outside_folder_is_a_bug(self) -> None:
        with pytest.raises(ValueError):
            parse("prompt: x").output_location("photos/", "other/a.png", "b", "e", "png")

    def test_prefix_containing_the_manifest_folder_is_a_problem(self) -> None:
        m = parse("prompt: x\noutput: {prefix: photos/}")
        ((field, reason),) = m.location_problems("b", "photos/food/")
        assert field == "output.prefix" and "photos/food/edited/" in reason
        elsewhere = parse("prompt: x\noutput: {prefix: photos/, bucket: results}")
        assert elsewhere.location_problems("b", "photos/food/") == []
        assert m.location_problems("b", "shop/") == []
        other = parse("prompt: x\noutput: {prefix: '', bucket: results}")
        assert other.location_problems("b", "") == []


class TestNaming:
    """Naming templates are checked once."""

    @pytest.mark.parametrize("template", ["{stem}.{ext}", "{folder}{name}", "{date}/{etag8}-{stem}",
                                          "x{{literal}}/{stem}.{ext}"])
    def test_good_templates(self, template: str) -> None:
        assert template_problems(template) == []

    def test_every_problem_is_listed(self) -> None:
        found = template_problems("/../{nope}.{ext:>5}")
        assert len(found) == 5


class TestRecipeAndSubscribers:
    """Recipe merging, revisions and subscriber selection."""

    def test_recipe_merges_over_service_defaults(self) -> None:
        defaults = ProviderSettings(model="gpt-image-2", quality="auto", size="auto",
                                    output_format="png")
        assert parse("prompt: p\nquality: high\noutput_format: webp").edit_spec(defaults) == (
            EditSpec(prompt="p", model="gpt-image-2", quality="high", size="auto",
                     output_format="webp"))

    def test_revision_ignores_formatting_and_delivery(self) -> None:
        base = parse("prompt: p\nquality: high\n")
        assert parse("# note\nquality: high\nprompt: 'p'\n").revision == base.revision
        assert parse('{"prompt": "p", "quality": "high"}', "json").revision == base.revision
        hooks = parse("prompt: p\nquality: high\nsettle_seconds: 60\n"
                      "subscribers: [{url: 'https://h.example'}]\nexclude: ['x*']")
        assert hooks.revision == base.revision
        for changed in ("prompt: q\nquality: high", "prompt: p\nquality: low",
                        "prompt: p\nquality: high\noutput: {prefix: o/}",
                        "prompt: p\nquality: high\nfallback: fail"):
            assert parse(changed).revision != base.revision
        assert len(base.revision) == 32

    def test_wants(self) -> None:
        m = sample("food-photos.yaml")
        assert [s.url for s in m.wants("batch.completed")] == [
            "https://hooks.example.com/imagedrop", "https://menu-cms.example.org/api/photo-ready"]
        assert [s.url for s in m.wants("image.failed")] == ["https://hooks.example.com/imagedrop"]
        default = parse("prompt: x\nsubscribers: [{url: 'https://h.example', "
                        "events: [image.failed, image.failed]}]")
        assert default.subscribers[0].events == ["image.failed"]
        assert parse("prompt: x\nsubscribers: [{url: 'https://h.example'}]").subscribers[
            0].events == list(EVENT_TYPES)


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagedrop", "manifest", "check", str(path)],
                          capture_output=True, text=True, timeout=60)


class TestCheckCommand:
    """`imagedrop manifest check FILE`."""

    def test_good_file(self) -> None:
        done = run_check(SAMPLES / "food-photos.yaml")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("ok: prompt \"Make this food photo")
        assert "2 subscribers" in done.stdout and len(done.stdout.splitlines()) == 1

    def test_good_json_file(self) -> None:
        done = run_check(SAMPLES / "background-cleanup.json")
        assert done.returncode == 0 and done.stdout.startswith("ok: ")

    def test_broken_file_lists_every_problem(self) -> None:
        path = SAMPLES / "broken-many.yaml"
        done = run_check(path)
        assert done.returncode == 1
        lines = done.stdout.splitlines()
        assert len(lines) >= 13
        assert all(line.startswith(f"{path}: ") for line in lines)
        assert f"{path}: colour: unknown field" in done.stdout

    def test_missing_file(self, tmp_path: Path) -> None:
        done = run_check(tmp_path / "nope.yaml")
        assert done.returncode == 1 and "(file): cannot read" in done.stdout
