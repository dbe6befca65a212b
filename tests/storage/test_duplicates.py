import numpy as np

from conceptvec.storage.duplicates import duplicate_rows, duplicates_warning


def test_duplicate_rows_counts_groups_and_names_their_examples():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(200, 7)).astype(np.float32)
    acts[10:15] = acts[3]  # a group of 6 (3, 10..14)
    acts[50] = acts[40]  # a group of 2
    acts[60, 0], acts[61, 0] = 0.0, -0.0  # equal values in otherwise different rows stay different rows
    ids = [f"img{i}" for i in range(200)]
    s = duplicate_rows(acts, ids)
    assert (s["n_rows"], s["n_distinct"], s["n_duplicate_rows"], s["n_groups"]) == (200, 194, 6, 2)
    assert s["share"] == 6 / 200
    assert s["largest"] == [{"size": 6, "ids": ["img3", "img10", "img11", "img12"]}, {"size": 2, "ids": ["img40", "img50"]}]
    message = duplicates_warning(s)
    assert "6 of 200 rows (3.0%) repeat another row exactly: only 194 distinct rows" in message
    assert "6 share one row (img3, img10, img11, img12 ...)" in message and "--background" in message


def test_signed_zeros_are_the_same_value_and_few_duplicates_say_nothing():
    acts = np.arange(300, dtype=np.float64).reshape(100, 3)
    acts[1] = [-0.0, 1.0, 2.0]
    acts[0] = [0.0, 1.0, 2.0]
    s = duplicate_rows(acts, list(range(100)))
    assert s["n_duplicate_rows"] == 1 and duplicates_warning(s) is None  # 1 % is within the share allowed
    assert duplicates_warning(None) is None


def test_rows_are_hashed_across_blocks(monkeypatch):
    import conceptvec.storage.duplicates as d

    monkeypatch.setattr(d, "BLOCK_BYTES", 16)  # one row of 4 float32 per block
    acts = np.zeros((5, 4), np.float32)
    acts[2:, 0] = [1, 2, 3]
    assert duplicate_rows(acts, list("abcde"))["largest"] == [{"size": 2, "ids": ["a", "b"]}]


def test_paths_in_one_folder_are_named_once_and_more_groups_are_counted():
    acts = np.arange(60, dtype=np.float32).reshape(20, 3)
    for g in range(5):  # five groups of two
        acts[2 * g + 1] = acts[2 * g]
    ids = [f"/usr/share/icons/Adwaita/{16 * (1 + i % 2)}x/status/icon{i}.png" for i in range(20)]
    ids[0], ids[1] = "/usr/share/icons/A/24x24/status/lock.png", "/usr/share/icons/A/24x24/status/secure.png"
    message = duplicates_warning(duplicate_rows(acts, ids), layer="blocks.5")
    assert message.startswith("blocks.5: 5 of 20 rows (25.0%) repeat another row exactly")
    assert "2 share one row (in /usr/share/icons/A/24x24/status/: lock.png, secure.png)" in message
    assert "2 share one row (in /usr/share/icons/Adwaita/: 16x/status/icon2.png, 32x/status/icon3.png)" in message
    assert "; 2 more groups." in message  # 3 of the 5 groups are shown
