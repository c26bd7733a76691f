from reference.errors import VireidError


def test_vireid_error_is_a_value_error():
    assert issubclass(VireidError, ValueError)
    assert str(VireidError("features: expected (n, d)")) == "features: expected (n, d)"
