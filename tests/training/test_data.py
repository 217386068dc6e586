import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from service.codecs.sequence import normalize
from service.manifest import SequenceNormalization
from tests.conftest import BSDS, ECG, FULL_BSDS, FULL_ECG
from training.config import ImageDataConfig
from training.data import (
    ImageFolderDataset,
    collate,
    image_files,
    load_image,
    normalization_spec,
    read_sequences,
    select_classes,
    split_files,
    split_indices,
)


@pytest.mark.parametrize(
    ("path", "count"),
    [
        pytest.param(ECG, 200, id="committed-sample"),
        pytest.param(FULL_ECG, 500, id="full", marks=pytest.mark.full_data),
    ],
)
def test_ucr_file_of_ecg5000(path, count):
    data = read_sequences(path)
    assert len(data.series) == count
    assert data.series[0].shape == (140, 1)
    assert set(data.labels) == {1, 2, 3, 4, 5}
    assert len(select_classes(data, [1]).series) == data.labels.count(1)


@pytest.mark.parametrize("fmt", ["ucr-comma", "csv", "npy", "jsonl"])
def test_each_sequence_format_reads_variable_lengths(tmp_path, fmt):
    series = [[1.0, 2.0, 3.0], [4.0, 5.0]]
    if fmt == "ucr-comma":
        path = tmp_path / "s.txt"
        path.write_text("1,1,2,3\n2,4,5,NaN\n")
    elif fmt == "csv":
        path = tmp_path / "s.csv"
        path.write_text("a,b,c\n1,2,3\n4,5,\n")
    elif fmt == "npy":
        path = tmp_path / "s.npy"
        np.save(path, np.array([[1, 2, 3], [4, 5, np.nan]]))
    else:
        path = tmp_path / "s.jsonl"
        path.write_text("\n".join(json.dumps({"values": s, "label": i}) for i, s in enumerate(series)))
    data = read_sequences(path)
    assert [s[:, 0].tolist() for s in data.series] == series


def test_multivariate_jsonl(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps([[1, 2], [3, 4], [5, 6]]) + "\n")
    assert read_sequences(path).series[0].shape == (3, 2)


def test_splits_are_fixed_and_disjoint():
    train, val = split_indices(500, 0.2, seed=0)
    _, again_val = split_indices(500, 0.2, seed=0)
    assert np.array_equal(val, again_val) and len(val) == 100
    assert not set(train) & set(val)


@pytest.mark.parametrize(
    ("folder", "held_out"),
    [pytest.param(BSDS, 4, id="committed-sample"), pytest.param(FULL_BSDS, 40, id="full", marks=pytest.mark.full_data)],
)
def test_image_split_holds_out_every_10th_file(folder, held_out):
    files = image_files(folder)
    train_files, val_files = split_files(files, 10)
    assert len(val_files) == held_out and val_files[0] == files[0] and not set(train_files) & set(val_files)


def test_normalisation_statistics_and_per_series():
    series = [np.array([[1.0], [3.0]]), np.array([[5.0], [7.0]])]
    spec = normalization_spec(series, "dataset")
    assert spec.mean == [4.0] and spec.std == pytest.approx([np.sqrt(5.0)])
    scaled, _, _ = normalize(np.array([[2.0], [4.0], [6.0]]), SequenceNormalization(kind="per_series"))
    assert scaled.mean() == pytest.approx(0.0, abs=1e-6) and scaled.std() == pytest.approx(1.0, abs=1e-6)


def test_noise_goes_to_the_input_only(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    config = ImageDataConfig(path=str(tmp_path), crop_size=32, noise_sigma=(25.0, 25.0))
    dataset = ImageFolderDataset(image_files(tmp_path), config, train=False)
    item = dataset[1]
    assert torch.all(item["target"] == item["target"][0, 0, 0])  # the clean crop is untouched
    assert float((item["input"] - item["target"]).std()) == pytest.approx(25 / 255, rel=0.2)
    assert torch.equal(dataset[1]["input"], item["input"])  # validation noise is fixed


def test_quantized_noise_is_clipped_8_bit_like_a_saved_photo(tmp_path):
    Image.fromarray(np.full((40, 50, 3), 0, np.uint8)).save(tmp_path / "black.png")
    config = ImageDataConfig(path=str(tmp_path), crop_size=32, noise_sigma=(25.0, 25.0), quantize_noisy=True)
    noisy = ImageFolderDataset(image_files(tmp_path), config, train=False)[0]["input"]
    assert float(noisy.min()) == 0.0 and float(noisy.max()) <= 1.0
    assert torch.equal(noisy * 255, torch.round(noisy * 255))
    # On black, clipping keeps only the positive half of the noise: the mean is biased upwards.
    assert float(noisy.mean()) > 0.3 * 25 / 255


def test_grayscale_and_collate(tmp_path):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.jpg")
    config = ImageDataConfig(path=str(tmp_path), channels=1, crop_size=16)
    batch = collate([ImageFolderDataset(image_files(tmp_path), config, train=True)[0]] * 2)
    assert batch["input"].shape == (2, 1, 16, 16)
    seq = collate([{"input": torch.ones(5, 1)}, {"input": torch.ones(2, 1)}])
    assert seq["input"].shape == (2, 5, 1) and seq["lengths"].tolist() == [5, 2]


def test_image_loading_keeps_pillows_bomb_guard_after_the_service_is_imported(tmp_path):
    import service.codecs.image
    import service.main  # noqa: F401  (the whole service, its image codec included)

    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3  # as Pillow ships it
    side = math.isqrt(2 * Image.MAX_IMAGE_PIXELS) + 1
    Image.new("1", (side, side), 1).save(tmp_path / "bomb.png")  # 1-bit, one colour: a small file
    with pytest.raises(Image.DecompressionBombError):
        load_image(tmp_path / "bomb.png", channels=3)
