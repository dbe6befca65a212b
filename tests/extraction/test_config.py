import pytest

import conceptvec as cv


def test_extract_config_validates_and_records():
    c = cv.ExtractConfig(per_class=130, mean=[0.5, 0.5, 0.5], std=(0.5, 0.5, 0.5))
    assert c.mean == (0.5, 0.5, 0.5) and c.to_dict()["per_class"] == 130
    assert c.replace(batch_size=8).batch_size == 8 and c.batch_size == 64  # frozen: a copy


@pytest.mark.parametrize("kwargs, match", [
    (dict(pool="mean"), r"pool must be one of avg, max, cls \(--pool\), got 'mean'"),
    (dict(dtype="int8"), "dtype must be one of float32, float16"),
    (dict(device="tpu"), "device must be auto, cpu, cuda or cuda:N"),
    (dict(std=(0.5, 0, 0.5)), "std must be > 0"),
    (dict(mean="grey"), "mean must be three finite numbers"),
    (dict(mean=(0.5, 0.5)), "mean must be three finite numbers"),
    (dict(std=(float("nan"), 1, 1)), "std must be three finite numbers"),
    (dict(size=100000), "size must be at most 4096"),
    (dict(workers=-1), "workers must be >= 0"),
    (dict(per_class=0), "per_class must be >= 1"),
    (dict(batch_size=2.5), "batch_size must be a whole number"),
])
def test_extract_config_refuses_bad_values(kwargs, match):
    with pytest.raises(cv.ConceptvecError, match=match):
        cv.ExtractConfig(**kwargs)


def test_config_and_keywords_are_not_mixed(tmp_path):
    with pytest.raises(cv.ConceptvecError, match="unknown extraction option"):
        cv.ExtractConfig().replace(batchsize=3)
    with pytest.raises(cv.ConceptvecError, match=r"either in config= or as keywords, not both \(keywords given: seed\)"):
        cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", config=cv.ExtractConfig(), seed=3, progress=False)
    with pytest.raises(cv.ConceptvecError, match="config must be a conceptvec.ExtractConfig"):
        cv.extract("digits", layer="block3", data="digits", out=tmp_path / "s", config={"seed": 3}, progress=False)
