"""The Omniglot loader on a generated fixture in the Omniglot authors' layout (never the real data), the split
and the task sampler."""

import zipfile

import numpy as np
import pytest

from paper_repro import omniglot


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    zipped, folders = tmp_path_factory.mktemp("zipped"), tmp_path_factory.mktemp("folders")
    omniglot.write_fixture(zipped, alphabets=2, characters=3, drawings=5, zipped=True)
    omniglot.write_fixture(folders, alphabets=2, characters=3, drawings=5, zipped=False)
    return zipped, folders


def test_zip_and_folder_load_the_same_images(fixture_dirs):
    zipped, folders = fixture_dirs
    assert [p.name for p in omniglot.source_files(zipped)] == ["images_background.zip", "images_evaluation.zip"]
    assert [p.name for p in omniglot.source_files(folders)] == ["images_background", "images_evaluation"]
    a, names_a = omniglot.load(zipped)
    b, names_b = omniglot.load(folders)
    assert a.shape == (12, 5, 28, 28) and a.dtype == np.uint8
    assert names_a == names_b == sorted(names_a)
    assert names_a[0] == "images_background/Alphabet_0/character01"
    np.testing.assert_array_equal(a, b)
    assert a.min() < 100 and a.max() == 255  # black strokes on white, resized


def test_missing_and_corrupt_data_name_the_path(tmp_path, fixture_dirs):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*images_background and images_evaluation"):
        omniglot.load(tmp_path)
    (tmp_path / "images_background.zip").write_bytes(b"not a zip")
    (tmp_path / "images_evaluation").mkdir()
    with pytest.raises(ValueError, match="images_background.zip is not a readable zip"):
        omniglot.load(tmp_path)
    bad = tmp_path / "uneven"
    omniglot.write_fixture(bad, alphabets=1, characters=2, drawings=3, zipped=False)
    next((bad / "images_evaluation").glob("*/*/*.png")).unlink()
    with pytest.raises(ValueError, match="same number"):
        omniglot.load(bad)


def test_corrupt_image_names_the_file(tmp_path):
    omniglot.write_fixture(tmp_path, alphabets=1, characters=1, drawings=2, zipped=True)
    with zipfile.ZipFile(tmp_path / "images_background.zip", "w") as z:
        z.writestr("images_background/A/character01/x_01.png", b"garbage")
    with pytest.raises(ValueError, match="character01/x_01.png: not a readable image"):
        omniglot.load(tmp_path)


def test_split_is_the_papers_sizes_and_deterministic():
    s = omniglot.split_characters(1623, seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [1028, 172, 423]
    assert len(np.unique(np.concatenate(list(s.values())))) == 1623
    np.testing.assert_array_equal(s["test"], omniglot.split_characters(1623, seed=0)["test"])
    assert not np.array_equal(s["test"], omniglot.split_characters(1623, seed=1)["test"])
    small = omniglot.split_characters(40, seed=0)  # a fixture: in proportion
    assert [len(small[k]) for k in ("train", "val", "test")] == [25, 5, 10]


def test_tasks_have_distinct_classes_rotations_and_labels():
    images = np.arange(3 * 4 * 28 * 28, dtype=np.uint8).reshape(3, 4, 28, 28) % 200
    images[:, :, 0, 0] = np.arange(12).reshape(3, 4)  # a drawing's id in its corner, rotations move it
    t = omniglot.sample_tasks(images, np.array([0, 2]), ways=5, shots=1, query=2, n_tasks=3,
                              rng=np.random.default_rng(0))
    assert t["support_x"].shape == (3, 5, 784) and t["query_x"].shape == (3, 10, 784)
    assert t["support_y"].tolist()[0] == [0, 1, 2, 3, 4] and t["query_y"].tolist()[0] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert t["support_x"].min() >= 0 and t["support_x"].max() <= 1
    for task in range(3):  # each class's support and queries: distinct drawings of character 0 or 2
        for label in range(5):
            x = np.concatenate([t["support_x"][task, label:label + 1].numpy(), t["query_x"][task, 2 * label:2 * label + 2].numpy()])
            imgs = (x.reshape(3, 28, 28) * 255).round().astype(np.uint8)
            found = [(c, d, k) for img in imgs for c in (0, 2) for d in range(4) for k in range(4)
                     if np.array_equal(np.rot90(images[c, d], k), img)]
            assert len(found) == 3 and len({f[1] for f in found}) == 3 and len({(f[0], f[2]) for f in found}) == 1
    with pytest.raises(ValueError, match="need 9 classes"):
        omniglot.sample_tasks(images, np.array([0, 2]), ways=9, shots=1, query=1, n_tasks=1, rng=np.random.default_rng(0))
