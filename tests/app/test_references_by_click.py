"""References by click on the Detect page: detections selected in the detail grid go into a
reference set (a new one, or an existing one with a true class); nothing is pasted."""

from collections import Counter

import pytest

from tests.app.conftest import populate, run_page
from tests.conftest import REPO
from workbench.ui.selection import NEW_SET

PAGE = "pages/2_Detect.py"


@pytest.fixture
def detected(workspace, tmp_path):
    populate(workspace, tmp_path)
    return workspace


def grid_key(at) -> str:
    (key,) = [d.key for d in at.dataframe if d.key and d.key.startswith("detail_detections_")]
    return key


def select_rows(at, key: str, rows: list[int]):
    """What clicking rows' left edge does in the browser (AppTest has no click for it)."""
    at.session_state[key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    return at.run()


def show_busiest_image(wb, at):
    """Inspect the image with the most detections: image ids, hence the grid's order, are
    random (the eight images are all on the first page)."""
    collection = wb.collections.get("cams")
    found = Counter(d.object_id for d in wb.detection.detections(collection,
                                                                 collection.active_key))
    return at.selectbox(key="detail_image").set_value(found.most_common(1)[0][0]).run()


def shown_detections(wb, at) -> list:
    collection = wb.collections.get("cams")
    object_id = at.selectbox(key="detail_image").value
    return wb.detection.detections(collection, collection.active_key, object_ids=[object_id])


def test_the_grid_shows_each_detection_with_its_crop_and_id(detected):
    at = run_page(PAGE)
    assert not at.exception, [e.message for e in at.exception]
    (grid,) = [d for d in at.dataframe if d.key == grid_key(at)]
    detections = shown_detections(detected, at)
    assert list(grid.value["detection"]) == [d.id for d in detections]
    assert all(uri.startswith("data:image/jpeg;base64,") for uri in grid.value["crop"])
    assert at.button(key="detect_refs_add").disabled, "nothing selected, nothing to add"


def test_selected_detections_go_into_a_new_then_an_existing_set(detected):
    wb = detected
    at = show_busiest_image(wb, run_page(PAGE))
    detections = shown_detections(wb, at)
    assert len(detections) >= 3
    at = select_rows(at, grid_key(at), [0, 2])
    assert at.selectbox(key="detect_refs_set").value == NEW_SET
    at.text_input(key="detect_refs_new_name").input("picked")
    at.button(key="detect_refs_add").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("2 added to picked" in s.value for s in at.success)
    items = wb.references.items("picked")
    assert sorted(i.detection_id for i in items) == sorted([detections[0].id, detections[2].id])
    assert {i.true_class for i in items} == {detections[0].class_name, detections[2].class_name}

    # The set now exists: pick it, give a true class, add one more and one already in.
    at = select_rows(at, grid_key(at), [1, 2])
    at.selectbox(key="detect_refs_set").select("picked")
    at.text_input(key="detect_refs_class").input("star")
    at.button(key="detect_refs_add").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("1 added to picked, 1 already" in s.value for s in at.success)
    by_id = {i.detection_id: i.true_class for i in wb.references.items("picked")}
    assert by_id[detections[1].id] == "star" and len(by_id) == 3


def test_a_bad_new_set_name_is_a_clear_error_and_adds_nothing(detected):
    wb = detected
    at = run_page(PAGE)
    at = select_rows(at, grid_key(at), [0])
    at.text_input(key="detect_refs_new_name").input("")
    at.button(key="detect_refs_add").click().run()
    assert not at.exception
    assert any("needs a name" in e.value for e in at.error)
    assert wb.references.list() == []


@pytest.mark.skipif(not (REPO / "pages" / "11_Search.py").exists(),
                    reason="the Search page is not in this tree yet")
def test_find_similar_opens_the_search_page_on_the_selected_detection(detected):
    at = show_busiest_image(detected, run_page(PAGE))
    assert at.button(key="detect_find_similar").disabled
    at = select_rows(at, grid_key(at), [1])
    wanted = shown_detections(detected, at)[1].id
    at.button(key="detect_find_similar").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state["search.detection_id"] == wanted
