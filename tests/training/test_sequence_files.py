"""Reading series files: CSV layouts, headers, timestamps and missing values, never a silent drop."""

import json

import numpy as np
import pytest

from training.config import load_config
from training.sequence_files import read_sequences
from training.series_values import describe


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _sensor_file(tmp_path, sensors=4, steps=30, timestamps=True):
    """One column per sensor, one row per time step; sensor s at step t holds 100 * s + t."""
    header = (["time"] if timestamps else []) + [f"sensor_{s}" for s in range(sensors)]
    rows = [
        ([f"2024-01-01T00:{t:02d}:00"] if timestamps else []) + [str(100 * s + t) for s in range(sensors)]
        for t in range(steps)
    ]
    return _write(tmp_path, "sensors.csv", [",".join(header), *(",".join(r) for r in rows)])


def test_rows_with_na_are_refused_with_their_row_and_column(tmp_path):
    # The file: 200 series, a quarter with an NA; they used to vanish as "headers" (150 read).
    lines = ["t" + ",t".join(str(i) for i in range(30))]
    for r in range(200):
        cells = [str(r + i) for i in range(30)]
        cells[5] = "NA" if r % 4 == 0 else cells[5]
        lines.append(",".join(cells))
    path = _write(tmp_path, "na.csv", lines)
    with pytest.raises(ValueError, match=r"missing value at row 2, column 6 \(and 49 more\).*interpolate"):
        read_sequences(path)
    data = read_sequences(path, missing="interpolate")
    assert len(data.series) == 200
    assert data.series[0][5, 0] == pytest.approx(5.0)  # midway between 4 and 6
    assert "50 missing values interpolated in 50 series" in describe(data, "na.csv")


@pytest.mark.parametrize("marker", ["", "NA", "nan", "NaN", "N/A", "null"])
def test_every_missing_marker_is_missing(tmp_path, marker):
    path = _write(tmp_path, "m.csv", ["1,2,3", f"4,{marker},6"])
    with pytest.raises(ValueError, match="missing value at row 2, column 2"):
        read_sequences(path)
    assert read_sequences(path, missing="interpolate").series[1][:, 0].tolist() == [4.0, 5.0, 6.0]


def test_interpolation_is_linear_per_series_and_edges_take_the_nearest_value(tmp_path):
    path = _write(tmp_path, "gaps.csv", ["NA,2,NA,NA,8", "10,NA,30"])
    data = read_sequences(path, missing="interpolate")
    assert data.series[0][:, 0].tolist() == [2.0, 2.0, 4.0, 6.0, 8.0]
    assert data.series[1][:, 0].tolist() == [10.0, 20.0, 30.0]  # not influenced by the other row


def test_trailing_empty_cells_end_a_series_early_and_say_so(tmp_path):
    data = read_sequences(_write(tmp_path, "v.csv", ["1,2,3,4", "5,6,,"]))
    assert [len(s) for s in data.series] == [4, 2]
    assert describe(data, "v.csv").startswith("read 2 series, lengths 2..4, from v.csv")
    assert "1 series end early" in describe(data, "v.csv")


def test_a_row_without_values_is_refused_even_when_interpolating(tmp_path):
    with pytest.raises(ValueError, match="row 2 holds no values"):
        read_sequences(_write(tmp_path, "e.csv", ["1,2", ",", "3,4"]), missing="interpolate")


def test_only_the_first_row_can_be_a_header(tmp_path):
    data = read_sequences(_write(tmp_path, "h.csv", ["a,b", "1,2", "3,4"]))
    assert len(data.series) == 2 and "first row taken as header (a, b)" in data.notes
    assert not any("header" in note for note in read_sequences(_write(tmp_path, "n.csv", ["1,2", "3,4"])).notes)
    with pytest.raises(ValueError, match=r"row 3, column 2: 'oops' is not a number"):
        read_sequences(_write(tmp_path, "bad.csv", ["a,b", "1,2", "3,oops"]))


def test_columns_layout_reads_one_series_per_sensor(tmp_path):
    path = _sensor_file(tmp_path, timestamps=False)
    by_rows = read_sequences(path)  # well-formed but wrong for this file: the summary says how it was read
    assert len(by_rows.series) == 30 and 'one series per row (data.layout = "rows")' in by_rows.notes
    data = read_sequences(path, layout="columns")
    assert len(data.series) == 4 and {s.shape for s in data.series} == {(30, 1)}
    assert data.series[2][:, 0].tolist() == [200.0 + t for t in range(30)]


def test_columns_layout_with_a_timestamp_column_by_name_or_number(tmp_path):
    path = _sensor_file(tmp_path)
    with pytest.raises(ValueError, match=r"row 2, column 1: '2024-01-01T00:00:00' is not a number.*layout"):
        read_sequences(path)  # used to be only "holds no series"
    data = read_sequences(path, layout="columns", timestamp_column="time")
    assert [s[0, 0] for s in data.series] == [0.0, 100.0, 200.0, 300.0]
    assert "column 1 left out as timestamps" in data.notes
    headerless = _write(tmp_path, "nh.csv", path.read_text().splitlines()[1:])
    again = read_sequences(headerless, layout="columns", timestamp_column=1)
    assert [s.tolist() for s in again.series] == [s.tolist() for s in data.series]


def test_columns_layout_names_the_column_of_a_missing_value(tmp_path):
    lines = ["time,left,right", "t0,1,10", "t1,NA,20", "t2,3,30", "t3,4,"]
    path = _write(tmp_path, "c.csv", lines)
    with pytest.raises(ValueError, match=r"row 3, column 2 \('left'\)"):
        read_sequences(path, layout="columns", timestamp_column="time")
    data = read_sequences(path, layout="columns", timestamp_column="time", missing="interpolate")
    assert data.series[0][:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert data.series[1][:, 0].tolist() == [10.0, 20.0, 30.0]  # a trailing gap ends the series


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"layout": "columns", "timestamp_column": "stamp"}, r"'stamp' is not in the header", id="name"),
        pytest.param({"layout": "columns", "timestamp_column": 9}, "outside the file's 5 columns", id="number"),
        pytest.param({"timestamp_column": "time"}, 'needs data.layout = "columns"', id="rows-layout"),
    ],
)
def test_a_wrong_timestamp_column_is_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        read_sequences(_sensor_file(tmp_path), **options)


def test_other_formats_refuse_inner_gaps_where_they_sit(tmp_path):
    ucr = _write(tmp_path, "u.txt", ["1 1.0 2.0 3.0", "2 4.0 NA 6.0"])
    with pytest.raises(ValueError, match="missing value at line 2, column 3"):
        read_sequences(ucr)
    np.save(tmp_path / "s.npy", np.array([[1.0, np.nan, 3.0]]))
    with pytest.raises(ValueError, match="missing value at series 1, step 2"):
        read_sequences(tmp_path / "s.npy")
    jsonl = _write(tmp_path, "s.jsonl", [json.dumps({"values": [1, None, 3], "label": 0})])
    assert read_sequences(jsonl, missing="interpolate").series[0][:, 0].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="apply to CSV files, not ucr"):
        read_sequences(ucr, layout="columns")


def test_config_keys_reach_the_reader_and_are_checked():
    config = load_config(None, ["model.family=recurrent", 'data.layout="columns"', 'data.timestamp_column="time"'])
    assert (config.data.layout, config.data.timestamp_column, config.data.missing) == ("columns", "time", "refuse")
    with pytest.raises(ValueError, match=r'data\.missing must be "refuse" or "interpolate"'):
        load_config(None, ["model.family=recurrent", 'data.missing="drop"'])
    with pytest.raises(ValueError, match="timestamp_column needs"):
        load_config(None, ["model.family=recurrent", 'data.timestamp_column="time"'])
