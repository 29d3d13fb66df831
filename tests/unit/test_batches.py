import pytest

from opskit.deploy import batches
from opskit.errors import UsageError


@pytest.mark.parametrize(
    ("spec", "total", "expected"),
    [
        ("1,25%", 8, [1, 2, 2, 2, 1]),
        ("1,5,25%", 25, [1, 5, 7, 7, 5]),
        ("100%", 25, [25]),
        ("1,100%", 25, [1, 24]),
        ("1", 3, [1, 1, 1]),
        ("10", 3, [3]),
        ("1%", 50, [1] * 50),
        ("2,50%", 1, [1]),
        ("1,25%", 0, []),
    ],
)
def test_sizes(spec: str, total: int, expected: list[int]) -> None:
    assert batches.sizes(spec, total) == expected


def test_split_keeps_order() -> None:
    assert batches.split("1,50%", list("abcde")) == [["a"], ["b", "c", "d"], ["e"]]


@pytest.mark.parametrize("spec", ["", "0", "1,,2", "abc", "150%", "-1", "5%%", "1;2"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(UsageError) as err:
        batches.sizes(spec, 10)
    assert "--batch" in err.value.message and err.value.hint
