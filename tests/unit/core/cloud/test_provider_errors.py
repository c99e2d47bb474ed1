"""The SDK's APIException translated at the edge: code, transience, the fields it names."""

from __future__ import annotations

from hcloud import APIException

from core.cloud.provider import CapacityError, translate


def test_an_invalid_image_is_told_from_other_invalid_input() -> None:
    refused = translate(
        APIException(
            "invalid_input",
            "invalid input in field 'image'",
            {"fields": [{"name": "image", "messages": ["image not found"]}]},
            correlation_id="abc",
        ),
        "create server",
    )
    assert (refused.code, refused.fields, refused.image_refused) == (
        "invalid_input",
        ("image",),
        True,
    )
    assert not refused.transient and refused.correlation_id == "abc"
    other = translate(
        APIException("invalid_input", "bad name", {"fields": [{"name": "name"}]}), "create"
    )
    assert other.fields == ("name",) and not other.image_refused


def test_errors_without_details_name_no_field() -> None:
    for details in (None, {}, {"fields": "nonsense"}, {"fields": [{"messages": []}, "x"]}):
        error = translate(APIException("invalid_input", "bad", details), "create")
        assert error.fields == () and not error.image_refused
    assert isinstance(translate(APIException("placement_error", "x", None), "c"), CapacityError)
    assert translate(APIException("server_error", "x", None), "c").transient
