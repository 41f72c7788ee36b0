"""The label vocabulary through the CLI: a misspelt verdict is a one-line error naming the
standard labels and how to allow others; `workbench labels` shows and sets the collection's
setting."""

import json

from typer.testing import CliRunner

from workbench.cli import app


def invoke(wb, *args):
    return CliRunner().invoke(app, ["--home", str(wb.home), *map(str, args)])


def error_of(result) -> str:
    """What `workbench` prints for a refused command (common.run prints the error's text)."""
    assert result.exit_code == 1, result.output
    return str(result.exception)


def test_a_misspelt_label_is_refused_until_custom_labels_are_allowed(review_wb):
    wb = review_wb
    message = error_of(invoke(wb, "annotate", "obj_a_0", "-c", "x", "-l", "Confirmed"))
    assert len(message.splitlines()) == 1, message
    assert "did you mean 'confirmed'?" in message and "confirmed, corrected, false_positive" \
        in message and "workbench labels x --allow-custom" in message
    assert wb.annotations.list(collection_id="col_x").total == 0

    shown = json.loads(invoke(wb, "--json", "labels", "x").output)
    assert shown["allow_custom_labels"] is False and "no_objects" in shown["standard"]
    allowed = invoke(wb, "labels", "x", "--allow-custom")
    assert allowed.exit_code == 0 and "custom labels allowed" in allowed.output
    saved = invoke(wb, "annotate", "obj_a_0", "-c", "x", "-l", "needs_second_look")
    assert saved.exit_code == 0, saved.output
    assert wb.annotations.list(label="needs_second_look").total == 1

    assert "other labels refused" in invoke(wb, "labels", "x", "--standard-only").output
    again = invoke(wb, "annotate", "obj_a_1", "-c", "x", "-l", "needs_second_look")
    assert "not a standard label" in error_of(again)
    assert "no collection 'nope'" in error_of(invoke(wb, "labels", "nope"))
