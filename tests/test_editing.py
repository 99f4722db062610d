"""Editing operations: exact changed-pixel sets, convention kept, diffs for undo."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_grainseg.errors import InputError
from napari_grainseg.segmentation.editing import (
    add_boundary,
    boundary_edit,
    delete_grain,
    erase_boundary,
    label_edit,
    merge_grains,
    polyline_mask,
    relabel_consecutive,
    split_grain,
)
from napari_grainseg.segmentation.grains import label_convention_problems, normalize_labels


@pytest.fixture
def three():
    """12x12: grain 1 left; grain 2 top right; grain 3 bottom right (1-px boundaries).

    Boundary: column 5 (rows 0-4 and 6-11), row 5 columns 6-11; (5, 5) is grain 1.
    """
    t = np.ones((12, 12), np.uint32)
    t[:, 6:] = 2
    t[6:, 6:] = 3
    lab = normalize_labels(t)
    assert label_convention_problems(lab) == []
    return lab


def changed(a, b):
    return set(zip(*np.nonzero(a != b)))


def test_merge_changes_exactly_grain_and_shared_boundary(three):
    out = merge_grains(three, [3, 2])
    expected = {(y, x) for y in range(6, 12) for x in range(6, 12)}  # grain 3 -> 2
    expected |= {(5, x) for x in range(7, 12)}  # shared boundary, (5, 6) still separates 1|2
    assert changed(three, out) == expected
    assert set(np.unique(out)) == {0, 1, 2}
    assert out[5, 6] == 0
    assert label_convention_problems(out) == []
    assert three.max() == 3  # input untouched


def test_merge_errors(three):
    lab = three.copy()
    lab[0, 0] = 0
    lab[0, 1] = 0
    with pytest.raises(InputError, match="no grain with id 9"):
        merge_grains(three, [1, 9])
    far = np.ones((5, 9), np.uint32)
    far[:, 3] = far[:, 6] = 0
    far[:, 4:6] = 2
    far[:, 7:] = 3
    with pytest.raises(InputError, match="do not touch"):
        merge_grains(far, [1, 3])
    assert np.array_equal(merge_grains(three, [2]), three)


def test_erase_boundary_by_point_and_mask(three):
    by_point = erase_boundary(three, [[5, 9]])
    assert np.array_equal(by_point, merge_grains(three, [2, 3]))
    mask = np.zeros(three.shape, bool)
    mask[2, 4:7] = True  # eraser stroke across the 1|2 boundary
    assert np.array_equal(erase_boundary(three, mask), merge_grains(three, [1, 2]))
    inside = np.zeros(three.shape, bool)
    inside[8, 8] = True  # no boundary pixel selected: nothing happens
    assert np.array_equal(erase_boundary(three, inside), three)


def test_split_grain_exact_pixels_and_new_id(three):
    out = split_grain(three, [(3, -1), (3, 12)])  # crosses 1 (5 px) and 2 (6 px): splits 2
    expected_line = {(3, x) for x in range(6, 12)}
    new_piece = {(4, x) for x in range(6, 12)}  # smaller piece gets id 4
    # (3, 5) on the old boundary now touches grain 1 only: it joins grain 1
    assert changed(three, out) == expected_line | new_piece | {(3, 5)}
    assert all(out[p] == 0 for p in expected_line) and all(out[p] == 4 for p in new_piece)
    assert out[3, 5] == 1
    assert label_convention_problems(out) == []


def test_split_grain_overshoot_and_explicit_id(three):
    # a slanted line through grain 1 that overshoots into grain 2: only grain 1 is cut
    out = split_grain(three, [(8, -1), (8, 8)], gid=1)
    assert changed(three, out) == (
        {(8, x) for x in range(0, 5)} | {(y, x) for y in range(9, 12) for x in range(0, 5)} | {(8, 5)}
    )  # old boundary pixel now beside grain 3 only
    assert out[8, 5] == 3
    assert np.all(out[:, 6:] == three[:, 6:])
    assert label_convention_problems(out) == []


def test_split_grain_that_is_not_cut(three):
    with pytest.raises(InputError, match="does not cut grain 1"):
        split_grain(three, [(3, 1), (3, 3)])
    with pytest.raises(InputError, match="at least two"):
        split_grain(three, [(3, 1)])


def test_add_boundary_cuts_every_grain_crossed(three):
    out = add_boundary(three, [(3, -2), (3, 13)])
    line = {(3, x) for x in range(12) if x != 5}
    pieces = {(y, x) for y in range(3) for x in range(5)} | {(4, x) for x in range(6, 12)}
    assert changed(three, out) == line | pieces
    assert int(out.max()) == 5
    assert label_convention_problems(out) == []
    # a dangling line closes nothing: no change at all
    assert np.array_equal(add_boundary(three, [(8, 7), (8, 9)]), three)


def test_delete_grain_shares_pixels_among_neighbours(three):
    out = delete_grain(three, 3)
    assert 3 not in out
    ch = changed(three, out)
    region = {(y, x) for y in range(6, 12) for x in range(6, 12)}
    assert region <= ch | {p for p in region if out[p] == 0}
    assert all(5 <= y and 5 <= x for y, x in ch)  # nothing else touched
    assert (out[11, 6:] == 1).sum() > 0 and (out[6, 6:] == 2).sum() > 0
    assert label_convention_problems(relabel_consecutive(out)) == []
    with pytest.raises(InputError, match="only grain"):
        delete_grain(np.ones((5, 5), np.uint32), 1)
    with pytest.raises(InputError, match="no grain with id 7"):
        delete_grain(three, 7)


def test_relabel_consecutive_changes_only_renumbered_pixels():
    lab = np.array([[1, 0, 5], [1, 0, 5]], np.uint32)
    out = relabel_consecutive(lab)
    assert out.tolist() == [[1, 0, 2], [1, 0, 2]]
    assert changed(lab, out) == {(0, 2), (1, 2)}


def test_label_and_boundary_edits_replay_the_operation(three):
    out = merge_grains(three, [2, 3])
    idx, val = label_edit(three, out)
    replay = three.copy()
    replay[idx] = val
    assert np.array_equal(replay, out)
    bmap = (three == 0).astype(np.uint8)
    idx, val = boundary_edit(bmap, out)
    assert set(zip(*idx)) == {(5, x) for x in range(7, 12)}
    assert np.all(val == 0) and val.dtype == np.uint8
    bmap[idx] = val
    assert np.array_equal(bmap, (out == 0).astype(np.uint8))


def test_polyline_mask_is_8_connected_1px():
    m = polyline_mask((20, 20), [(0, 0), (10, 19), (19, 5)])

    assert ndi.label(m, np.ones((3, 3)))[1] == 1
    assert m.sum() < 20 + 15 + 2


@pytest.fixture(scope="module")
def many():
    """A 192 x 192 micrograph's grains (about 90), with hand-thick boundaries in one corner."""
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.synthetic import generate

    sample = generate(seed=3, shape=(192, 192), preset="tem", mean_diameter=20.0)
    return boundaries_to_labels(sample.boundaries)


def _spliced(labels, window, crop_after):
    out = labels.copy()
    out[window] = crop_after
    return out


@pytest.mark.parametrize("seed", range(6))
def test_an_edit_in_its_window_changes_the_same_pixels_as_on_the_whole_image(many, seed):
    from napari_grainseg.segmentation.editing import grains_on_lines, grains_window

    rng = np.random.default_rng(seed)
    n = int(many.max())
    # merge a grain with a neighbour: the neighbours of a grain are the ids around its outline
    gid = int(rng.integers(1, n + 1))
    ring = ndi.binary_dilation(many == gid, np.ones((5, 5), bool))
    for other in (int(i) for i in np.unique(many[ring]) if i not in (0, gid)):
        window = grains_window(many, [gid, other])
        assert (window[0].stop - window[0].start) * (window[1].stop - window[1].start) < many.size / 4
        try:
            merged = merge_grains(many, [gid, other])
        except InputError:  # only a corner in common: refused in the window too
            with pytest.raises(InputError, match="do not touch"):
                merge_grains(many[window], [gid, other])
            continue
        assert np.array_equal(_spliced(many, window, merge_grains(many[window], [gid, other])), merged)
    # delete two grains
    ids = [int(i) for i in rng.choice(np.arange(1, n + 1), 2, replace=False)]
    window = grains_window(many, ids)
    picks = np.array([np.argwhere(many == i)[0] for i in ids])  # a pixel of each: the search starts there
    around = tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(picks.min(axis=0), picks.max(axis=0)))
    assert grains_window(many, ids, around=around) == window
    whole, part = many, many[window]
    for i in ids:
        whole, part = delete_grain(whole, i), delete_grain(part, i)
    assert np.array_equal(_spliced(many, window, part), whole)
    # split a grain through its centre: the same cut (new ids are numbered within the window)
    ys, xs = np.nonzero(many == gid)
    cy, cx = ys.mean(), xs.mean()
    slope = rng.uniform(-1, 1)  # a line through the grain's centroid
    line = np.array([[cy - 40, cx - 40 * slope], [cy + 40, cx + 40 * slope]])
    crossed = grains_on_lines(many, [line])
    window = grains_window(many, crossed)
    try:
        whole = split_grain(many, line)
    except InputError:
        with pytest.raises(InputError):
            split_grain(many[window], line - [window[0].start, window[1].start])
        return
    part = split_grain(many[window], line - [window[0].start, window[1].start])
    spliced = _spliced(many, window, part)
    assert np.array_equal(spliced == 0, whole == 0)
    assert np.array_equal(spliced[whole == many], many[whole == many])  # only the cut grain's pieces renumbered


def test_grains_window_is_the_grown_bounding_box_and_names_missing_grains(three):
    from napari_grainseg.segmentation.editing import grains_on_lines, grains_window

    assert grains_window(three, [2], margin=1) == (slice(0, 6), slice(5, 12))
    assert grains_window(three, [2, 3], margin=0) == (slice(0, 12), slice(6, 12))
    with pytest.raises(InputError, match="no grain with id 7"):
        grains_window(three, [2, 7])
    with pytest.raises(InputError, match="no grain with id 7"):
        grains_window(three, [2, 7], around=(slice(1, 2), slice(8, 9)))
    assert grains_window(three, [2], margin=1, around=(slice(1, 2), slice(8, 9))) == (slice(0, 6), slice(5, 12))
    with pytest.raises(InputError, match="no grain to edit"):
        grains_window(three, [])
    assert grains_on_lines(three, [[(3, -4), (3, 12)]]) == [1, 2]
    assert grains_on_lines(three, [[(-9, -9), (-5, -5)]]) == []


def _edited_boundaries(boundaries: np.ndarray, labels: np.ndarray, kind: str, rng) -> np.ndarray:
    from skimage.draw import disk, line

    out = boundaries.copy()
    h, w = out.shape
    y, x = int(rng.integers(8, h - 8)), int(rng.integers(8, w - 8))
    if kind == "erase":  # an eraser dab over a boundary
        ys, xs = np.nonzero(boundaries)
        k = int(rng.integers(ys.size))
        out[disk((ys[k], xs[k]), float(rng.uniform(1, 4)), shape=out.shape)] = 0
    elif kind == "line":  # a stroke across grains
        rr, cc = line(
            y, x, int(np.clip(y + rng.integers(-30, 30), 0, h - 1)), int(np.clip(x + rng.integers(-30, 30), 0, w - 1))
        )
        out[rr, cc] = 1
    elif kind == "blob":  # a thick dab, as a large brush paints
        out[disk((y, x), float(rng.uniform(2, 6)), shape=out.shape)] = 1
    elif kind == "tiny":  # a small closed loop: a grain below the minimum area
        out[y - 2 : y + 2, x - 2 : x + 2] = 1
        out[y - 1 : y + 1, x - 1 : x + 1] = 0
    else:  # a grain deleted by the tool
        gid = int(labels[y, x]) or int(labels.max())
        out = (delete_grain(labels, gid) == 0).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def field():
    """A 384 x 384 micrograph's grains (about 350): room for windows well inside it."""
    from napari_grainseg.segmentation.grains import boundaries_to_labels
    from napari_grainseg.synthetic import generate

    return boundaries_to_labels(generate(seed=4, shape=(384, 384), preset="tem", mean_diameter=20.0).boundaries)


@pytest.mark.parametrize("kind", ["erase", "line", "blob", "tiny", "delete"])
def test_rebuilding_near_an_edit_gives_the_grains_of_the_whole_image(field, kind):
    from napari_grainseg.segmentation.editing import grain_correspondence, rebuild_grains_near
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    labels = field
    boundaries = (labels == 0).astype(np.uint8)
    next_id = int(labels.max()) + 1
    rng = np.random.default_rng(["erase", "line", "blob", "tiny", "delete"].index(kind))
    local = 0
    for _ in range(12):  # edits one after another, as a user makes them
        edited = _edited_boundaries(boundaries, labels, kind, rng)
        rows, cols = np.nonzero(edited != boundaries)
        if rows.size == 0:
            continue
        changed = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        whole = boundaries_to_labels(edited)
        update = rebuild_grains_near(labels, edited, changed, next_id=next_id)
        if update is None:  # the caller builds the whole image
            labels, boundaries, next_id = whole, edited, int(whole.max()) + 1
            continue
        local += 1
        spliced = labels.copy()
        spliced[update.window] = update.labels
        assert grain_correspondence(spliced, whole) is not None  # the same grains, whatever their ids
        n_before = np.unique(labels[labels > 0]).size
        assert np.unique(spliced[spliced > 0]).size == n_before + update.count_change
        far = np.ones(labels.shape, bool)
        far[update.window] = False
        assert np.array_equal(spliced[far], labels[far])  # ids outside the window untouched
        assert spliced.max() < update.next_id
        labels, boundaries, next_id = spliced, edited, update.next_id
    assert local >= 6  # most edits were rebuilt locally


def test_a_split_line_overshooting_into_a_larger_grain_splits_the_grain_it_cuts():
    t = np.ones((20, 40), np.uint32)
    t[:, 6:] = 2  # a narrow grain 1 (columns 0-4) beside a wide grain 2
    lab = normalize_labels(t)
    line = [(10, -1), (10, 30)]  # across grain 1, then 25 px into grain 2 without cutting it
    out = split_grain(lab, line)
    assert out.max() == 3 and out[5, 2] != out[15, 2] and not out[10, :5].any()  # grain 1 cut in two
    assert np.array_equal(out[:, 6:], lab[:, 6:])  # grain 2 untouched
    with pytest.raises(InputError, match="does not cut grain 2"):
        split_grain(lab, line, gid=2)


def test_a_neighbour_grown_into_a_deleted_grain_keeps_its_own_id():
    from napari_grainseg.segmentation.editing import rebuild_grains_near
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    b = np.zeros((480, 480), np.uint8)
    b[39::40, :] = b[:, 39::40] = 1  # 144 cells of 39 x 39 px
    b[80:119, 122] = 1  # a strip S, 2 px wide, along G's right side (in the cell right of G)
    labels = boundaries_to_labels(b)
    b = (labels == 0).astype(np.uint8)  # the lines along the image's edge separate nothing: gone
    g, s, t = labels[100, 100], labels[100, 120], labels[100, 140]
    after = delete_grain(labels, int(g))
    edited = (after == 0).astype(np.uint8)
    rows, cols = np.nonzero(edited != b)
    changed = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    update = rebuild_grains_near(labels, edited, changed, next_id=int(labels.max()) + 1)
    assert update is not None
    out = labels.copy()
    out[update.window] = update.labels
    grown_s = out == s
    assert grown_s.sum() > 2 * (labels == s).sum()  # S took more of G than its own area ...
    assert out[100, 120] == s and out[100, 140] == t and g not in out  # ... and kept its id; G's is gone
    assert update.count_change == -1


@pytest.mark.parametrize("kind", ["erase", "line", "blob", "delete"])
def test_undoing_an_edit_rebuilt_near_it_gives_every_grain_its_id_back(field, kind):
    from napari_grainseg.segmentation.editing import rebuild_grains_near

    rng = np.random.default_rng(["erase", "line", "blob", "delete"].index(kind) + 10)
    labels = field
    boundaries = (labels == 0).astype(np.uint8)
    undone = 0
    for _ in range(8):
        edited = _edited_boundaries(boundaries, labels, kind, rng)
        rows, cols = np.nonzero(edited != boundaries)
        if rows.size == 0:
            continue
        changed = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        next_id = int(labels.max()) + 1
        forward = rebuild_grains_near(labels, edited, changed, next_id=next_id)
        if forward is None:
            continue
        after = labels.copy()
        after[forward.window] = forward.labels
        # the Undo: the boundaries as they were, the removed grains remembered
        back = rebuild_grains_near(after, boundaries, changed, next_id=forward.next_id, earlier=forward.removed)
        assert back is not None
        restored = after.copy()
        restored[back.window] = back.labels
        np.testing.assert_array_equal(restored, labels)
        assert set(back.restored) == set(forward.removed)
        undone += 1
    assert undone >= 4


def test_grain_correspondence_maps_the_same_grains_whatever_their_ids(three):
    from napari_grainseg.segmentation.editing import grain_correspondence

    renumbered = np.where(three > 0, 10 - three, 0).astype(np.uint32)
    assert grain_correspondence(three, renumbered) == {1: 9, 2: 8, 3: 7}
    assert grain_correspondence(three, three) == {1: 1, 2: 2, 3: 3}
    merged = np.where(three == 3, 2, three).astype(np.uint32)  # one id over a boundary: other grains
    assert grain_correspondence(three, merged) is None and grain_correspondence(merged, three) is None
    moved = three.copy()
    moved[0, 0] = 0  # a boundary pixel more
    assert grain_correspondence(three, moved) is None


@pytest.mark.parametrize("kind", ["erase", "line", "blob", "delete"])
def test_carrying_ids_over_a_whole_image_build_gives_the_ids_a_local_rebuild_gives(field, kind):
    from napari_grainseg.segmentation.editing import carry_ids, grain_correspondence, rebuild_grains_near
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    rng = np.random.default_rng(["erase", "line", "blob", "delete"].index(kind) + 20)
    labels = field
    boundaries = (labels == 0).astype(np.uint8)
    next_id = int(labels.max()) + 1
    compared = 0
    for _ in range(8):
        edited = _edited_boundaries(boundaries, labels, kind, rng)
        rows, cols = np.nonzero(edited != boundaries)
        if rows.size == 0:
            continue
        whole = boundaries_to_labels(edited)  # numbered 1..n afresh
        carried = carry_ids(labels, whole, next_id=next_id)
        assert carried.labels.shape == labels.shape and carried.labels.dtype == np.uint32
        assert grain_correspondence(whole, carried.labels) is not None  # the same grains, one id each
        n_before = np.unique(labels[labels > 0]).size
        assert np.unique(carried.labels[carried.labels > 0]).size == n_before + carried.count_change
        assert carried.labels.max() < carried.next_id
        changed = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        local = rebuild_grains_near(labels, edited, changed, next_id=next_id)
        if local is not None:  # where the window suffices, both give every grain the same id
            spliced = labels.copy()
            spliced[local.window] = local.labels
            np.testing.assert_array_equal(carried.labels, spliced)
            assert carried.next_id == local.next_id and set(carried.removed) == set(local.removed)
            compared += 1
        far = ndi.binary_dilation(edited != boundaries, np.ones((81, 81), bool))
        assert np.array_equal(carried.labels[~far], labels[~far])  # colours away from the edit stay
        labels, boundaries, next_id = carried.labels, edited, carried.next_id
    assert compared >= 4


def test_carrying_ids_keeps_the_larger_part_of_a_merge_and_gives_an_undone_grain_its_id_back():
    from napari_grainseg.segmentation.editing import carry_ids
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    b = np.zeros((120, 120), np.uint8)
    b[39::40, :] = b[:, 39::40] = 1
    b[:, 69] = 1  # cell columns 40-78 cut into a wide (40-68) and a narrow (70-78) part
    labels = boundaries_to_labels(b)
    labels = np.where(labels > 0, labels + 100, 0).astype(np.uint32)  # ids 101..: not 1..n
    wide, narrow = int(labels[20, 50]), int(labels[20, 75])
    merged_b = (labels == 0).astype(np.uint8)
    merged_b[:39, 69] = 0  # erase the line between them
    merged = carry_ids(labels, boundaries_to_labels(merged_b), next_id=int(labels.max()) + 1)
    assert merged.labels[20, 50] == merged.labels[20, 75] == wide  # the merge keeps the larger part's id
    assert np.array_equal(merged.labels[40:], labels[40:])  # every other grain keeps its id
    assert set(merged.removed) == {narrow} and merged.count_change == -1
    undone = carry_ids(merged.labels, boundaries_to_labels(labels == 0), next_id=merged.next_id, earlier=merged.removed)
    np.testing.assert_array_equal(undone.labels, labels)  # an Undo brings the narrow grain's id back
    assert undone.restored == (narrow,) and undone.count_change == 1
    fresh = carry_ids(merged.labels, boundaries_to_labels(labels == 0), next_id=merged.next_id)
    assert fresh.labels[20, 75] == merged.next_id and fresh.next_id == merged.next_id + 1  # without memory: new
    with pytest.raises(InputError, match="one shape"):
        carry_ids(labels, labels[:10], next_id=1)
    other = boundaries_to_labels(np.roll(labels == 0, 20, axis=1))  # every grain moved
    assert carry_ids(labels, other, next_id=1, max_changed_px=labels.size // 2) is None
    assert carry_ids(labels, other, next_id=1).labels.max() >= labels.max()


def test_carrying_ids_handles_sparse_huge_ids_empty_images_and_look_alike_undo_candidates():
    from napari_grainseg.segmentation.editing import carry_ids, rebuild_grains_near
    from napari_grainseg.segmentation.grains import boundaries_to_labels

    b = np.zeros((400, 400), np.uint8)
    b[39::40, :] = b[:, 39::40] = 1
    labels = boundaries_to_labels(b)
    labels = np.where(labels > 0, labels + 20_000_000, 0).astype(np.uint32)  # ids far above the pixel count
    erased = (labels == 0).astype(np.uint8)
    erased[:39, 79] = 0  # one merge
    local = rebuild_grains_near(labels, erased, (slice(0, 39), slice(79, 80)), next_id=int(labels.max()) + 1)
    carried = carry_ids(labels, boundaries_to_labels(erased), next_id=int(labels.max()) + 1)
    spliced = labels.copy()
    spliced[local.window] = local.labels
    np.testing.assert_array_equal(carried.labels, spliced)
    assert carried.count_change == local.count_change == -1 and carried.next_id == local.next_id
    empty = carry_ids(np.zeros((0, 5), np.uint32), np.zeros((0, 5), np.uint32), next_id=1)
    assert empty.labels.shape == (0, 5) and empty.count_change == 0 and empty.next_id == 1
    with pytest.raises(InputError, match="2\\*\\*32"):
        carry_ids(np.array([[2**32 + 5, 0, 7]], np.int64), np.array([[1, 0, 2]], np.int64), next_id=8)
    # two remembered grains with the same box corner, box shape and area: the one with these pixels returns
    before = np.ones((2, 5), np.uint32)
    after = np.array([[1, 1, 0, 2, 0], [1, 1, 0, 2, 2]], np.uint32)
    look_alike = {7: (0, 3, np.array([[1, 0], [1, 1]], bool)), 8: (0, 3, np.array([[0, 1], [1, 1]], bool))}
    assert carry_ids(before, after, next_id=9, earlier=look_alike).restored == (7,)


def test_an_undone_grain_takes_its_own_id_before_a_grown_neighbour_can_claim_it():
    """A painted area let grain Y grow over most of grain X (X removed, remembered); on Undo the
    restored X must not take Y's id for overlapping it most, nor Y a new one."""
    from napari_grainseg.segmentation.editing import carry_ids

    painted = np.zeros((100, 100), np.uint32)
    painted[0:50] = 427  # Y, grown over rows 10-49 of X
    painted[51:100] = 500  # Z, grown over the boundary row 60
    original = np.zeros((100, 100), np.uint32)
    original[0:9], original[10:60], original[61:100] = 427, 389, 500
    x_mask = original[10:60] == 389
    undone = np.zeros((100, 100), np.uint32)  # the whole-image build after Undo: ids 1..3
    undone[0:9], undone[10:60], undone[61:100] = 1, 2, 3
    update = carry_ids(painted, undone, next_id=501, earlier={389: (10, 0, x_mask)})
    np.testing.assert_array_equal(update.labels, original)
    assert update.restored == (389,) and update.next_id == 501 and update.removed == {}
