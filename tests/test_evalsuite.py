"""The evaluation harness: frozen sets, method runners, the table."""

from __future__ import annotations

import numpy as np
import pytest

from napari_grainseg.errors import InputError
from napari_grainseg.evaluation.suite import CLASSICAL_TUNING_SET, EVAL_SETS, format_markdown, run_evaluation
from napari_grainseg.segmentation.grains import probability_watershed
from napari_grainseg.training.net1 import VALIDATION_SEED_BASE


def test_test_sets_are_frozen_and_disjoint_from_training_and_validation():
    synthetic = [s for s in [*EVAL_SETS.values(), CLASSICAL_TUNING_SET] if hasattr(s, "first_seed")]
    ranges = [(s.first_seed, s.first_seed + s.size) for s in synthetic]
    for i, (a0, a1) in enumerate(ranges):
        assert a0 >= 10**9 and a1 <= VALIDATION_SEED_BASE  # training seeds are < 1e9
        for b0, b1 in ranges[i + 1 :]:
            assert a1 <= b0 or b1 <= a0
    first = next(EVAL_SETS["id-tem"].samples(limit=1))
    again = next(EVAL_SETS["id-tem"].samples(limit=1))
    np.testing.assert_array_equal(first.image, again.image)


def test_probability_watershed_recovers_a_grid():
    prob = np.zeros((90, 90), np.float32)
    prob[::30, :] = prob[:, ::30] = 1.0
    prob += np.random.default_rng(0).random(prob.shape).astype(np.float32) * 0.05
    labels = probability_watershed(prob, h=0.1)
    interior = labels[35:55, 35:55]
    assert len(np.unique(interior[interior > 0])) == 1
    assert 9 <= labels.max() <= 16  # 9 full cells plus slivers at the right/bottom edge


def test_classical_and_table_on_one_image():
    results = run_evaluation(
        ["ood-paper"],
        ["classical"],
        limit=1,
        progress=False,
        classical_params={"sigma": 2.0, "h": 0.005, "merge_threshold": None},
    )
    scores = results["sets"]["ood-paper"]["methods"]["classical"]
    assert 0 < scores["f1_2px"] <= 1 and scores["vi"] >= 0 and scores["s_per_mpx"] > 0
    table = format_markdown(results)
    assert "| classical |" in table and "F1@2px" in table


def test_unknown_set_or_method_is_a_clear_error():
    with pytest.raises(InputError, match="unknown set"):
        run_evaluation(["nope"], ["classical"])
    with pytest.raises(InputError, match="unknown method"):
        run_evaluation(["id-tem"], ["magic"])


def test_markdown_section_replacement_keeps_other_text(tmp_path):
    from napari_grainseg.evaluation.markdown import replace_section

    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\nintro text\n")
    replace_section(doc, "eval", "table v1", heading="## Eval")
    replace_section(doc, "other", "other v1")
    replace_section(doc, "eval", "table v2")
    text = doc.read_text()
    assert text.count("## Eval") == 1 and "table v2" in text and "table v1" not in text
    assert text.startswith("# Benchmarks\n\nintro text") and "other v1" in text
    assert text.index("table v2") < text.index("other v1")
    with pytest.raises(InputError, match="section names"):
        replace_section(doc, "eval -->", "x")  # would write markers that cannot be found again
    assert doc.read_text() == text


def test_paired_differences_known_values_and_mismatch():
    from napari_grainseg.evaluation.suite import paired_differences

    method = [
        {"vi": 0.5, "vi_merge": 0.2, "grain_count_error": -0.1},
        {"vi": 0.7, "vi_merge": 0.5, "grain_count_error": 0.05},
        {"vi": 1.0, "vi_merge": 0.1, "grain_count_error": 0.0},
    ]
    reference = [
        {"vi": 0.6, "vi_merge": 0.2, "grain_count_error": 0.3},
        {"vi": 0.9, "vi_merge": 0.4, "grain_count_error": -0.2},
        {"vi": 0.9, "vi_merge": 0.1, "grain_count_error": 0.0},
    ]
    d = paired_differences(method, reference)
    count = d["abs_grain_count_error"]  # magnitudes: 0.1 vs 0.3, 0.05 vs 0.2, 0 vs 0
    assert count["mean"] == pytest.approx((-0.2 - 0.15 + 0.0) / 3) and count["better"] == 2
    diff = np.array([-0.1, -0.2, 0.1])
    assert d["vi"]["mean"] == pytest.approx(diff.mean())
    assert d["vi"]["se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(3))
    assert (d["vi"]["better"], d["vi"]["n"]) == (2, 3)
    assert d["vi_merge"]["better"] == 0 and d["vi_merge"]["mean"] == pytest.approx(0.1 / 3)
    with pytest.raises(ValueError, match="same images"):
        paired_differences(method[:2], reference)
    # F1: higher is better; an image with an undefined value (NaN) is left out of the pair
    f1 = paired_differences(
        [{"f1_2px": 0.8}, {"f1_2px": 0.5}, {"f1_2px": float("nan")}],
        [{"f1_2px": 0.6}, {"f1_2px": 0.7}, {"f1_2px": 0.9}],
        metrics=("f1_2px",),
    )["f1_2px"]
    assert (f1["better"], f1["n"]) == (1, 2) and f1["mean"] == pytest.approx(0.0)


def test_evaluation_pairs_other_net1_methods_with_the_default_image_by_image():
    results = run_evaluation(["ood-paper"], ["net1", "net1+threshold"], limit=2, progress=False, device="cpu")
    data = results["sets"]["ood-paper"]
    paired = data["paired"]
    assert list(paired) == ["net1+threshold"]
    assert paired["net1+threshold"]["vi"]["n"] == 2
    assert paired["net1+threshold"]["vi"]["mean"] == pytest.approx(
        data["methods"]["net1+threshold"]["vi"] - data["methods"]["net1"]["vi"]
    )
    table = format_markdown(results)
    assert "against net1 " in table and "- net1+threshold: VI " in table and "|count err|" in table


def test_larger_sets_are_asked_for_by_name_and_keep_their_own_markdown_section(tmp_path, capsys):
    from napari_grainseg.cli import main
    from napari_grainseg.evaluation.suite import DEFAULT_EVAL_SETS
    from napari_grainseg.synthetic.concepts import CONCEPT_FAMILIES

    assert set(DEFAULT_EVAL_SETS) < set(EVAL_SETS)
    assert {
        "id-tem-64",
        "id-train-64",
        "tune-tem",
        "tune-train",
        "tune-small",
        "tune-random",
        "look-random",
        "look-independent",
        "real-tbm",
        "real-tbm-test",
        "real-tbm-adapt",
        "tune-independent",
        *(f"concept-{name}" for name in CONCEPT_FAMILIES),
        "ood-paper-48",
        "concept-noise-48",
        "concept-inclined-48",
        "ood-paper-tall",
    } == set(EVAL_SETS) - set(DEFAULT_EVAL_SETS)
    tall = EVAL_SETS["ood-paper-tall"]  # session 23's diagnosis: the paper look, four times as tall
    assert (tall.preset, tall.shape, tall.first_seed, tall.size) == ("paper", (384, 496), 8_003_000_000, 16)
    for name, seed in (
        ("ood-paper", 8_002_000_000),
        ("concept-noise", 8_002_100_000),
        ("concept-inclined", 8_002_200_000),
    ):
        small, large = EVAL_SETS[name], EVAL_SETS[f"{name}-48"]  # frozen: same draws, new seeds, 48 images
        assert (large.first_seed, large.size) == (seed, 48)
        assert (large.preset, large.shape, large.overrides) == (small.preset, small.shape, small.overrides)
        assert not any(  # no seed of the 48 is a seed of another set
            other.first_seed < seed + large.size and seed < other.first_seed + other.size
            for key, other in EVAL_SETS.items()
            if key != f"{name}-48" and hasattr(other, "first_seed")
        )
    look, tune = EVAL_SETS["look-independent"], EVAL_SETS["tune-independent"]
    assert tune.first_seed + tune.size <= look.first_seed or look.first_seed + look.size <= tune.first_seed
    assert EVAL_SETS["id-tem-64"].size == 64 and EVAL_SETS["id-tem-64"].preset == EVAL_SETS["id-tem"].preset
    doc = tmp_path / "bench.md"
    doc.write_text("# B\n\n<!-- BEGIN eval -->\nmain table\n<!-- END eval -->\n")
    assert (
        main(
            [
                "eval",
                "--sets",
                "id-tem-64",
                "--methods",
                "net1",
                "--limit",
                "1",
                "--device",
                "cpu",
                "--markdown",
                str(doc),
                "--section",
                "eval-larger",
            ]
        )
        == 0
    )
    text = doc.read_text()
    assert "main table" in text  # the default section is kept
    assert "<!-- BEGIN eval-larger -->" in text and "### id-tem-64" in text
    assert "--section eval-larger" in text  # the regenerating command is recorded
    assert main(["eval", "--sets", "id-tem", "--limit", "1", "--markdown", str(doc), "--section", "a b"]) == 2
    assert "section names are letters" in capsys.readouterr().err


def test_real_traced_sets_load_with_the_truth_convention():
    from napari_grainseg.evaluation.real_sets import TBM_TEST_MICROGRAPHS, tbm_micrograph, tbm_split

    try:
        adapt, test = tbm_split()
    except InputError:
        pytest.skip("the TBM crops (../shared/data/tbm_train) are not on this machine")
    assert len(test) >= 32 and len(adapt) + len(test) == EVAL_SETS["real-tbm"].size
    # grouped by micrograph: no test crop shares a micrograph with an adaptation crop
    assert {tbm_micrograph(p) for p, _ in test} == set(TBM_TEST_MICROGRAPHS)
    assert not {tbm_micrograph(p) for p, _ in adapt} & set(TBM_TEST_MICROGRAPHS)
    sample = next(EVAL_SETS["real-tbm-test"].samples(limit=1))
    assert sample.image.shape == sample.labels.shape == (256, 256) and sample.image.dtype == np.float32
    assert 0.0 <= sample.image.min() < sample.image.max() <= 1.0
    assert np.array_equal(sample.boundaries, sample.labels == 0) and sample.labels.max() > 10
    # the traced ~3 px lines became 1-px boundaries: no boundary pixel is buried in boundary
    b = np.pad(sample.boundaries, 1)
    buried = b[1:-1, 1:-1] & b[:-2, 1:-1] & b[2:, 1:-1] & b[1:-1, :-2] & b[1:-1, 2:]
    assert buried.sum() <= 0.002 * sample.boundaries.sum()


def test_labels_from_traced_mask_centres_thick_lines_and_refuses_empty_masks():
    from napari_grainseg.evaluation.real_sets import labels_from_traced_mask

    mask = np.zeros((40, 40), np.uint8)
    mask[:, 17:24] = 255  # a 7-px wide traced line down the middle
    labels = labels_from_traced_mask(mask)
    assert labels.max() == 2 and np.all((labels == 0).sum(axis=1) == 1)
    column = np.nonzero(labels[0] == 0)[0][0]
    assert 17 <= column <= 23
    with pytest.raises(InputError, match="no boundary"):
        labels_from_traced_mask(np.zeros((40, 40), np.uint8))


def test_independent_renderer_is_deterministic_with_exact_thin_truth():
    from napari_grainseg.evaluation.independent import render_independent, thin_boundaries
    from napari_grainseg.evaluation.suite import EVAL_SETS

    a, b, c = render_independent(5, (96, 128)), render_independent(5, (96, 128)), render_independent(6, (96, 128))
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    assert a.image.shape == a.labels.shape == a.boundaries.shape == (96, 128)
    assert 0 <= a.image.min() and a.image.max() <= 1
    # the truth lines are 1 px (2x2 blocks of boundary pixels only at a few junctions), grains between them
    blocks = a.boundaries[:-1, :-1] & a.boundaries[1:, :-1] & a.boundaries[:-1, 1:] & a.boundaries[1:, 1:]
    assert blocks.sum() < 0.02 * a.boundaries.sum()
    assert (a.labels[a.boundaries] == 0).all() and (a.labels[~a.boundaries] > 0).all() and a.labels.max() >= 3
    toy = np.array([[1, 1, 2], [1, 1, 2], [3, 3, 3]])
    assert thin_boundaries(toy).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 0, 0]]
    independent = EVAL_SETS["look-independent"]
    assert not independent.in_default_run and independent.size == 16
    assert len(list(independent.samples(limit=2))) == 2
