import pytest

from workbench.buckets import MetadataValidator, parse_schema, schema_from_fields
from workbench.errors import AlreadyExistsError, NotFoundError, ValidationError

SCHEMA = {
    "properties": {
        "image": {"type": "image", "required": True},
        "camera_id": {"type": "text", "required": True},
        "frame": {"type": "integer"},
        "exposure": {"type": "number"},
        "night": {"type": "boolean"},
        "timestamp": {"type": "datetime"},
    }
}


@pytest.mark.parametrize(
    ("schema", "error"),
    [
        (SCHEMA, None),
        (None, None),  # image only
        ({"properties": {"image": {"type": "image"}, "cam": {"type": "txt"}}}, "expected one of"),
        ({"properties": {"cam": {"type": "text"}}}, "named 'image'"),
        ({"properties": {"image": {"type": "image"}, "x": {"type": "text", "reqired": 1}}},
         "unknown key"),
        ({"properties": {"image": {"type": "image"}, "bad name": {"type": "text"}}},
         "field name"),
        ({"properties": {"image": {"type": "image"}, "photo": {"type": "image"}}},
         "exactly one"),
    ],
)
def test_schema_validation(schema, error):
    if error is None:
        fields = parse_schema(schema)
        assert fields[0].name == "image" and fields[0].required
    else:
        with pytest.raises(ValidationError, match=error):
            parse_schema(schema)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"camera_id": "cam_1"}, {"camera_id": "cam_1"}),
        ({"camera_id": "c", "frame": "12", "exposure": "0.5", "night": "true"},
         {"camera_id": "c", "frame": 12, "exposure": 0.5, "night": True}),
        ({"camera_id": "c", "timestamp": "2026-05-03T14:30:00Z"},
         {"camera_id": "c", "timestamp": "2026-05-03T14:30:00Z"}),
        ({"camera_id": "c", "camra": "x"}, "'camra' is not in the schema"),
        ({"frame": 3}, "required metadata field 'camera_id' is missing"),
        ({"camera_id": "c", "frame": "twelve"}, "'frame' should be integer, got 'twelve'"),
        ({"camera_id": 5}, "'camera_id' should be text"),
        ({"camera_id": "c", "timestamp": "yesterday"}, "'timestamp' should be datetime"),
    ],
)
def test_metadata_validation(wb, metadata, expected):
    validate = MetadataValidator(wb.buckets.create("cams", SCHEMA))
    if isinstance(expected, dict):
        assert validate(metadata) == expected
    else:
        with pytest.raises(ValidationError, match=expected):
            validate(metadata)


def test_bucket_names_are_unique_and_checked(wb):
    wb.buckets.create("footage")
    with pytest.raises(AlreadyExistsError):
        wb.buckets.create("footage")
    with pytest.raises(ValidationError, match="not valid"):
        wb.buckets.create("../etc")
    with pytest.raises(NotFoundError, match="footage"):
        wb.buckets.get("nope")
    assert [b.name for b in wb.buckets.list()] == ["footage"]


def test_field_specs_from_the_command_line():
    schema = schema_from_fields(["camera_id:text", "frame:integer:required"])
    assert schema["properties"]["frame"] == {"type": "integer", "required": True}
    with pytest.raises(ValidationError, match="name:type"):
        schema_from_fields(["camera_id"])
