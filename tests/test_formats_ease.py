"""Pure parts of the formats and ease-of-deployment probes (the servers they start are exercised by
experiments/formats.py and experiments/ease.py)."""

from probes.ease import count_user_lines, meaningful_lines
from probes.formats import compare, labels_from


def test_labels_from_labels_and_probabilities():
    assert labels_from({"outputs": [{"data": [2, 0, 1], "shape": [3]}]}) == [2, 0, 1]
    assert labels_from({"outputs": [{"data": [0.1, 0.7, 0.2, 0.8, 0.1, 0.1], "shape": [2, 3]}]}) == [1, 0]
    assert labels_from({"outputs": [{"data": [1.0, 2.0], "shape": [2, 1]}]}) == [1, 2]


def test_compare_parity():
    assert compare([0, 1, 2], [0, 1, 2])["parity"] is True
    r = compare([0, 1, 2, 2], [0, 2, 2, 1])
    assert (r["parity"], r["mismatches"], r["agreement"]) == (False, [1, 3], 0.5)
    assert compare([0, 1], [0])["error"] == "1 labels for 2 rows"
    assert compare([0], "HTTP 500: boom") == {"parity": False, "error": "HTTP 500: boom", "mismatches": None}


def test_meaningful_lines_skip_docstrings_comments_blanks():
    code = '"""Module doc\nover two lines."""\n\nimport os  # why\n\n\ndef f():\n    """Doc."""\n    # note\n    return (1 +\n            2)\n'
    assert meaningful_lines(code, "code") == 4  # import, def, return over two lines
    assert meaningful_lines('{\n  "a": 1,\n\n  "b": 2\n}\n', "config") == 4


def test_user_lines_of_code_platforms_count_real_files(tmp_path):
    n, files = count_user_lines("kserve", tmp_path, "m")
    assert 20 < n < 60 and files[0]["file"].endswith("kserve_server.py")
    (tmp_path / "seldon" / "models" / "m").mkdir(parents=True)
    (tmp_path / "seldon" / "models" / "settings.json").write_text('{\n  "http_port": 1\n}\n')
    (tmp_path / "seldon" / "models" / "m" / "model-settings.json").write_text('{\n  "name": "m",\n  "x": 2\n}\n')
    assert count_user_lines("seldon", tmp_path, "m")[0] == 7
